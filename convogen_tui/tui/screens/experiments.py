"""The first screen: every experiment under the root with its counts and a validity mark.

The mark is ``convogen check``'s verdict (``core.check.check_experiment`` with the model resolver).
The counts follow the disk: every two seconds a worker stamps each experiment's folders and setup
(a ``stat`` each) and lists again only the experiments whose stamp changed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.keeping.tracked import Stamp, stamp
from convogen_tui.core.making.check import check_experiment
from convogen_tui.core.making.experiment import (
    CONV_TEMPLATE,
    CONVERSATIONS,
    JUDGE_TEMPLATE,
    RESTYLE_TEMPLATE,
    RESTYLED,
    SETUP_FILE,
    TRASH,
    find_experiments,
    load_experiment,
)
from convogen_tui.core.making.scaffold import (
    ExperimentCounts,
    copy_experiment,
    create_from_sample,
    experiment_counts,
)
from convogen_tui.tui.cells import display_safe
from convogen_tui.tui.commands import PaletteCommand
from convogen_tui.tui.keys import KeyFooter
from convogen_tui.tui.screens.dialogs import AskDialog
from convogen_tui.tui.typed import convogen_app
from convogen_tui.tui.widgets.lists import KeyTable, enter_binding
from convogen_tui.tui.widgets.titlebar import TitleBar
from convogen_tui.tui.workers import ReportsWorkerErrors, background

POLL_S = 2.0
CHECKED = (SETUP_FILE, CONV_TEMPLATE, RESTYLE_TEMPLATE, JUDGE_TEMPLATE)  # a change here may change validity
COUNTED = (CONVERSATIONS, RESTYLED, TRASH)  # a change here changes counts only

Stamps = tuple[Stamp | None, ...]


def experiment_stamp(path: Path) -> Stamps:
    """What changes when an experiment's validity or counts may have: setup, templates, folders."""
    return tuple(stamp(path / name) for name in (*CHECKED, *COUNTED))


def checked_counts(path: Path, previous: ExperimentCounts | None = None) -> ExperimentCounts:
    """Counts, with validity as `convogen check` decides it (model reference included).

    With ``previous`` (its setup and templates unchanged) the check is not run again: a run in
    another shell changes the counts every few seconds, and the check reads the whole seed file.
    """
    from convogen_tui.llm.loader import resolve_experiment_model

    try:
        counts = experiment_counts(path)
        if previous is not None:
            counts.ok, counts.problems = previous.ok, previous.problems
            return counts
        report = check_experiment(load_experiment(path), resolve_model=resolve_experiment_model)
    except (ConvogenError, OSError):
        return ExperimentCounts(path, path.name, False, 1, 0, 0, 0, 0)
    counts.ok = report.ok
    counts.problems = len(report.errors)
    return counts


class ExperimentTable(KeyTable):
    BINDINGS: ClassVar[list[BindingType]] = [enter_binding("Open", "open the experiment")]


class ExperimentsScreen(ReportsWorkerErrors, Screen[None]):
    """Pick an experiment to open, or make a new one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new", "New from sample", id="new"),
        Binding("c", "copy", "Copy", id="copy"),
        Binding("r", "refresh", "Refresh", id="refresh"),
    ]

    def palette_commands(self) -> list[PaletteCommand]:
        """This screen's commands for the palette (tui/commands.py)."""
        return [
            PaletteCommand("New experiment from the sample", "n", self.action_new),
            PaletteCommand("Copy the selected experiment", "c", self.action_copy),
        ]

    class Scanned(Message):
        def __init__(self, rows: list[ExperimentCounts], stamps: dict[Path, Stamps]) -> None:
            super().__init__()
            self.rows = rows
            self.stamps = stamps

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.rows: list[ExperimentCounts] = []
        self.stamps: dict[Path, Stamps] = {}
        self.countings = 0  # scans that found a change and counted (tests: none while hidden)

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield Static(f"Experiments under {self.root}", id="expts-title", markup=False)
        yield ExperimentTable(id="expts", cursor_type="row", zebra_stripes=True)
        yield Static("", id="expts-hint", markup=False)
        yield KeyFooter()

    def on_mount(self) -> None:
        self.title = "ConvoGen"
        self.sub_title = "experiments"
        table = self.query_one(DataTable)
        table.add_columns("Experiment", "Valid", "Convs", "Restyled", "Flagged", "Trash", "Stale")
        self.action_refresh()
        self.set_interval(POLL_S, self._poll)

    def on_screen_resume(self) -> None:
        self.action_refresh()

    def action_refresh(self) -> None:
        self.query_one("#expts-hint", Static).update("scanning…")
        self._scan(self.root, {}, [])

    def _poll(self) -> None:
        # the screen shown, not is_current: Textual counts the screen under the top one as
        # current too (it may show through), and an open experiment's runs change its counts
        # every few seconds; this screen counts again when it comes back (on_screen_resume)
        if self.app.screen is self:
            self._scan(self.root, dict(self.stamps), list(self.rows))

    @background("scan", "listing experiments")
    def _scan(self, root: Path, known: dict[Path, Stamps], rows: list[ExperimentCounts]) -> None:
        """Count (and check) the experiments whose stamp changed; with ``known`` empty, all of them."""
        paths = find_experiments(root)
        stamps = {path: experiment_stamp(path) for path in paths}
        if known and stamps == known:
            return
        self.countings += 1
        previous = {row.path: row for row in rows}
        fresh = []
        for path in paths:
            old, before, now = previous.get(path), known.get(path), stamps[path]
            if old is not None and before == now:
                fresh.append(old)
            elif old is not None and before is not None and before[: len(CHECKED)] == now[: len(CHECKED)]:
                fresh.append(checked_counts(path, old))  # only the counts changed
            else:
                fresh.append(checked_counts(path))
        self.post_message(self.Scanned(fresh, stamps))

    @on(Scanned)
    def _show(self, message: Scanned) -> None:
        table = self.query_one(DataTable)
        selected = self.selected()
        table.clear()
        self.rows = message.rows
        self.stamps = message.stamps
        for row in self.rows:
            mark = "✓" if row.ok else f"✗ {row.problems}"
            table.add_row(
                display_safe(row.name),
                mark,
                *(str(n) for n in (row.conversations, row.restyled, row.flagged, row.trash, row.stale)),
                key=str(row.path),
            )
        if selected is not None:
            keys = [str(r.path) for r in self.rows]
            if str(selected.path) in keys:
                table.move_cursor(row=keys.index(str(selected.path)))
        hint = "Enter: open   n: new from the sample   c: copy the selected one   ?: help"
        if not self.rows:
            hint = f"No experiment under {self.root}. Press n to create one from the sample."
        self.query_one("#expts-hint", Static).update(hint)

    def selected(self) -> ExperimentCounts | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row < 0 or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    @on(DataTable.RowSelected)
    def _selected(self, _event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        row = self.selected()
        if row is not None:
            convogen_app(self).open_experiment(row.path)

    def action_new(self) -> None:
        def made(name: str | None) -> None:
            if name:
                self._make(lambda: create_from_sample(self.root, name))

        self.app.push_screen(AskDialog("Name of the new experiment (a copy of the sample):"), made)

    def action_copy(self) -> None:
        row = self.selected()
        if row is None:
            self.notify("no experiment to copy; press n to start from the sample", severity="warning")
            return

        def made(name: str | None) -> None:
            if name:
                self._make(lambda: copy_experiment(row.path, self.root, name))

        self.app.push_screen(AskDialog(f"Copy '{row.name}' (setup, templates, personas) as:"), made)

    def _make(self, create: Callable[[], Path]) -> None:
        try:
            path = create()
        except (ConvogenError, OSError) as exc:
            self.notify(str(exc), title="cannot create the experiment", severity="error", timeout=10)
            return
        self.notify(f"created {path}")
        convogen_app(self).open_experiment(path)
