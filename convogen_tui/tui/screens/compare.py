"""Compare: did the edit help? Two template versions' figures with deltas, then their paired
conversations (the same seed x persona made by both), old and new, one cell at a time.

From Review (``c``: the row's version against the current texts') or the palette. ``j``/``k`` go
through the pairs, ``h``/``l`` choose the old or the new side for ``o`` keep, ``f`` flag and ``x``
delete (to the trash), ``d`` shows the diff of the texts, ``R`` reruns the old version's cells with
the current templates (the screen closes with those jobs for the Generate pane). Side by side from
100 columns; stacked below, and ``t`` hides the figures to give the pair the whole screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.judging.compare import Pair, compare_versions, figure_lines, own_flags, pairs_of
from convogen_tui.core.keeping.records import ConversationRecord
from convogen_tui.core.keeping.versions import (
    VersionBook,
    VersionEntry,
    default_pair,
    diff_versions,
    experiment_texts,
    version_rows,
)
from convogen_tui.core.making.pairing import cells_to_pair
from convogen_tui.core.making.pipeline import Job
from convogen_tui.tui.cells import display_safe, fit
from convogen_tui.tui.screens.choice import DiffDialog
from convogen_tui.tui.session import Session
from convogen_tui.tui.typed import convogen_app
from convogen_tui.tui.widgets.stream_view import StreamView
from convogen_tui.tui.workers import ReportsWorkerErrors, background

SIDE_BY_SIDE = 100  # from this many columns the two conversations of a pair sit side by side


@dataclass
class Comparison:
    """What a worker found: both versions, compare's figures, the pairs, each row's own flags."""

    a: VersionEntry
    b: VersionEntry
    result: dict[str, Any]
    pairs: list[Pair]
    flags: dict[str, list[str]]
    diff: list[str]


class CompareScreen(ReportsWorkerErrors, Screen[list[Job] | None]):
    """Two versions and their paired conversations; closes with jobs when ``R`` asks for a rerun."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back"),
        Binding("j", "step(1)", "Next"),
        Binding("k", "step(-1)", "Prev pair", show=False),
        Binding(
            "h", "side('a')", "Old", show=False, tooltip="choose the old side (left, or top) for o, f, x"
        ),
        Binding(
            "l", "side('b')", "New", show=False, tooltip="choose the new side (right, or bottom) for o, f, x"
        ),
        Binding("o", "mark('kept')", "Keep", tooltip="keep the chosen side's conversation (again: clear)"),
        Binding("f", "mark('flagged')", "Flag", tooltip="flag the chosen side's conversation (again: clear)"),
        Binding("x", "delete", "Del", tooltip="move the chosen side's conversation to the trash"),
        Binding("d", "diff", "Diff", tooltip="the unified diff of every text that changed"),
        Binding("R", "rerun", "Rerun", tooltip="rerun the old version's cells with the current templates"),
        Binding("t", "toggle_figures", "Figures", show=False, tooltip="hide or show the figures"),
        Binding("r", "refresh", "Refresh", show=False, tooltip="compute again"),
    ]

    class Computed(Message):
        def __init__(self, comparison: Comparison | None, why: str = "") -> None:
            super().__init__()
            self.comparison = comparison
            self.why = why

    class PairLoaded(Message):
        def __init__(self, index: int, a: ConversationRecord | None, b: ConversationRecord | None) -> None:
            super().__init__()
            self.index, self.a, self.b = index, a, b

    def __init__(self, session: Session, a: str | None = None, b: str | None = None) -> None:
        super().__init__()
        self.session = session
        self.names = (a, b)
        self.comparison: Comparison | None = None
        self.index = 0
        self.side = "b"

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("comparing…", id="cmp-figures", markup=False)
        yield Static("", id="cmp-cell", markup=False)
        with Container(id="cmp-pair"):
            yield StreamView("", id="cmp-a", follow=False)
            yield StreamView("", id="cmp-b", follow=False)
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"ConvoGen · {self.session.experiment.name} · Compare"
        self.watch(convogen_app(self), "model_status", lambda status: setattr(self, "sub_title", status))
        self._arrange()
        self.compute()

    def on_resize(self) -> None:
        self._arrange()
        if self.comparison is not None:
            self._show_figures()

    def _arrange(self) -> None:
        wide = self.size.width >= SIDE_BY_SIDE
        self.query_one("#cmp-pair").styles.layout = "horizontal" if wide else "vertical"
        self._mark_side()

    # computing ----------------------------------------------------------------------------
    @background("compare", "comparing versions")
    def compute(self) -> None:
        store = self.session.store
        rows = store.list()
        texts = experiment_texts(self.session.experiment)
        table, _ = version_rows(VersionBook(self.session.experiment.dir), rows, texts)
        by_name = {r.entry.name: r.entry for r in table}
        a_name, b_name = self.names
        if a_name and b_name:
            missing = [n for n in (a_name, b_name) if n not in by_name]
            if missing:
                self.post_message(self.Computed(None, f"no version {', '.join(missing)}"))
                return
            a, b = by_name[a_name], by_name[b_name]
        else:
            chosen = default_pair(table, a_name)
            if chosen is None:
                why = "one version so far: edit a template, then R reruns its cells with the new texts"
                self.post_message(self.Computed(None, why))
                return
            a, b = chosen
        result = compare_versions(store, a, b, rows)
        versions = {r.id: r.version for r in rows}
        pairs = pairs_of([r for r in rows if r.version == a.id], [r for r in rows if r.version == b.id])
        flags = {r.id: own_flags(r, versions) for p in pairs for r in (p.a, p.b)}
        diff = diff_versions(VersionBook(self.session.experiment.dir), a, b, texts)
        self.post_message(self.Computed(Comparison(a, b, result, pairs, flags, diff)))

    def on_compare_screen_computed(self, message: Computed) -> None:
        self.comparison = message.comparison
        if message.comparison is None:
            self.query_one("#cmp-figures", Static).update(message.why)
            self.query_one("#cmp-cell", Static).update("")
            return
        self.names = (message.comparison.a.name, message.comparison.b.name)
        self.index = min(self.index, max(len(message.comparison.pairs) - 1, 0))
        self._show_figures()
        self._show_pair()

    def _show_figures(self) -> None:
        c = self.comparison
        if c is None:
            return
        lines = figure_lines(c.result)
        rows = -(-len(lines) // 2)
        width = max((self.size.width - 5) // 2, 30)  # padding, then " │ " between the halves
        label = min(max(width - 25, 8), 14)
        head = f"{'':{label}}{c.a.name:>7}{c.b.name:>7}{'delta':>11}"

        def cell(item: tuple[str, str, str, str]) -> str:
            name, x, y, d = item
            return f"{fit(name, label):{label}}{x:>7}{y:>7}{d:>11}"

        left, right = lines[:rows], lines[rows:]
        text = [f"{head} │ {head}"]
        text += [f"{cell(x)} │ {cell(y) if y else ''}" for x, y in zip(left, [*right, None], strict=False)]
        paired = c.result["paired"]
        text.append(
            f"{paired['cells']} pairs: {paired['only_a_flagged']} flagged only in {c.a.name}, "
            f"{paired['only_b_flagged']} only in {c.b.name} · p = {paired['p_value']:.3g} (exact sign test)"
        )
        self.query_one("#cmp-figures", Static).update("\n".join(text))

    # the pair -----------------------------------------------------------------------------
    def _show_pair(self) -> None:
        c = self.comparison
        views = self.query_one("#cmp-a", StreamView), self.query_one("#cmp-b", StreamView)
        if c is None or not c.pairs:
            cell = f"no cell made by both {c.a.name} and {c.b.name}: R reruns {c.a.name}'s cells" if c else ""
            self.query_one("#cmp-cell", Static).update(cell)
            for view in views:
                view.set_text("", "")
            return
        pair = c.pairs[self.index]
        self.query_one("#cmp-cell", Static).update(
            display_safe(f"pair {self.index + 1}/{len(c.pairs)} · seed {pair.tweet_id} · {pair.persona}")
        )
        for view, key, version, row in ((views[0], "h", c.a, pair.a), (views[1], "l", c.b, pair.b)):
            marks = " ".join(([row.mark] if row.mark else []) + c.flags.get(row.id, [])) or "no flags"
            view.border_title = display_safe(f"{key}: {version.name} · {marks}")
            view.set_text("", "reading…")
        self._load(self.index, pair.a.id, pair.b.id)

    @background("compare-pair", "reading a pair of conversations")
    def _load(self, index: int, a_id: str, b_id: str) -> None:
        records = []
        for conv_id in (a_id, b_id):
            try:
                records.append(self.session.store.load(conv_id)[0])
            except ConvogenError:
                records.append(None)
        self.post_message(self.PairLoaded(index, records[0], records[1]))

    def on_compare_screen_pair_loaded(self, message: PairLoaded) -> None:
        if message.index != self.index:
            return
        for view_id, record in (("#cmp-a", message.a), ("#cmp-b", message.b)):
            view = self.query_one(view_id, StreamView)
            view.set_text(record.conv if record else "", "(the file is gone or unreadable)")

    def _mark_side(self) -> None:
        for side in ("a", "b"):
            self.query_one(f"#cmp-{side}").set_class(side == self.side, "-chosen")

    # actions ------------------------------------------------------------------------------
    def action_close(self) -> None:
        self.dismiss(None)

    def action_refresh(self) -> None:
        self.compute()

    def action_step(self, delta: int) -> None:
        if self.comparison is None or not self.comparison.pairs:
            return
        self.index = (self.index + delta) % len(self.comparison.pairs)
        self._show_pair()

    def action_side(self, side: str) -> None:
        self.side = side
        self._mark_side()

    def action_toggle_figures(self) -> None:
        figures = self.query_one("#cmp-figures")
        figures.display = not figures.display

    def _chosen(self) -> str | None:
        c = self.comparison
        if c is None or not c.pairs:
            return None
        pair = c.pairs[self.index]
        return (pair.a if self.side == "a" else pair.b).id

    def action_mark(self, mark: str) -> None:
        conv_id = self._chosen()
        if conv_id is None or self.comparison is None:
            return
        pair = self.comparison.pairs[self.index]
        row = pair.a if self.side == "a" else pair.b
        new = "" if row.mark == mark else mark
        try:
            self.session.store.set_mark(conv_id, new)
        except ConvogenError as exc:
            self.notify(str(exc), severity="error")
            return
        row.mark = new
        self.notify(f"{conv_id[:8]}: {new or 'mark cleared'}")
        self._show_pair()

    def action_delete(self) -> None:
        conv_id = self._chosen()
        if conv_id is None:
            return
        try:
            self.session.store.delete([conv_id])
        except ConvogenError as exc:
            self.notify(str(exc), severity="error")
            return
        self.notify(f"moved {conv_id[:8]} to the trash · u on Review undoes")
        self.compute()

    def action_diff(self) -> None:
        c = self.comparison
        if c is None:
            self.notify("nothing to compare yet", severity="warning")
            return
        text = "\n".join(c.diff) or f"{c.a.name} and {c.b.name} have the same texts"
        self.app.push_screen(DiffDialog(f"{c.a.name} (-) and {c.b.name} (+)", text, "Esc: back to Compare"))

    def action_rerun(self) -> None:
        """The old version's cells the current texts have not made, with their recorded seeds."""
        c = self.comparison
        if c is None:
            self.notify("nothing to rerun: no second version to compare yet", severity="warning")
            return
        experiment, store = self.session.experiment, self.session.store
        texts = experiment_texts(experiment)
        rows = [r for r in store.list() if r.version == c.a.id]
        cells, problems = cells_to_pair(experiment, store, rows, made_by=texts.id if texts else None)
        for problem in problems[:1]:
            self.notify(f"not rerun, unreadable: {problem}", severity="warning")
        if not cells:
            self.notify(f"the current templates already made every cell of {c.a.name}")
            return
        self.dismiss(self.session.cell_jobs([cell.cell for cell in cells]))
