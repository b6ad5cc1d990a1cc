"""Review pane: the experiment's conversations, each beside its restyled twin; delete, undo, mark.

The listing comes from the store's index (one worker call, re-reading only changed files); filtering
works on the summaries in memory and draws at most MAX_ROWS rows, so a keystroke never re-reads
files, even with 10 000 conversations. The experiment screen asks for a new listing whenever the
conversation folders change (this app, a `convogen mark` in another shell, a finished restyle), and
``r`` lists again on demand. Columns are sized in terminal cells to the table's width, so nothing
runs off the right edge.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Input, Select, Static

from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.judging.quality import RULE_NAMES
from convogen_tui.core.keeping.records import ConversationRecord, JudgmentRecord, RestyledRecord
from convogen_tui.core.keeping.store import ConversationSummary
from convogen_tui.core.making.experiment import Persona
from convogen_tui.core.making.planner import Cell
from convogen_tui.core.making.seeds import Seed
from convogen_tui.core.persona import persona_label
from convogen_tui.tui.cells import display_safe, fit, one_line
from convogen_tui.tui.messages import RunJobs
from convogen_tui.tui.screens.dialogs import ConfirmDialog
from convogen_tui.tui.session import Session
from convogen_tui.tui.widgets.lists import KeyTable
from convogen_tui.tui.widgets.stream_view import StreamView
from convogen_tui.tui.workers import ReportsWorkerErrors, background

MAX_ROWS = 1000
FIXED = [("✓", 1), ("time", 11), ("seed", 8)]  # then persona, turns, len, flags and (if room) tweet
WIDE = 110  # from this many columns the table also shows the seed's text
SHOW_FILTERS: list[tuple[str, str]] = [
    ("all", "all"),
    ("flagged", "mark:flagged"),
    ("kept", "mark:kept"),
    ("unmarked", "mark:"),
    ("any flag", "flags:any"),
    ("no flag", "flags:none"),
    ("not restyled", "restyled:no"),
    *[(rule, f"flag:{rule}") for rule in RULE_NAMES],  # one per quality rule (convogen quality --rules)
    ("unreadable", "flag:unreadable"),  # conversation files that cannot be read
]
LOW_SCORE = 2  # the judge filters show pairs scored this or lower
JUDGE_FILTERS: list[tuple[str, str]] = [
    (f"any score <= {LOW_SCORE}", "judge:low"),
    ("judge-failed", "judge:failed"),
    ("not judged", "judge:none"),
]


def show_filters(criteria: list[str]) -> list[tuple[str, str]]:
    """The drop-down: marks, flags, rules; with judge criteria, the judge's filters too."""
    if not criteria:
        return SHOW_FILTERS
    per_criterion = [(f"{name} <= {LOW_SCORE}", f"judge:{name}") for name in criteria]
    return [*SHOW_FILTERS[:7], *JUDGE_FILTERS, *per_criterion, *SHOW_FILTERS[7:]]


def judge_matches(judgment: JudgmentRecord | None, show: str) -> bool:
    """A judge filter (``judge:low``, ``judge:failed``, ``judge:none``, ``judge:CRITERION``)."""
    what = show[6:]
    if what == "none":
        return judgment is None
    if judgment is None:
        return False
    if what == "failed":
        return judgment.failed
    if judgment.failed:
        return False
    if what == "low":
        return min(judgment.scores.values(), default=LOW_SCORE + 1) <= LOW_SCORE
    return judgment.scores.get(what, LOW_SCORE + 1) <= LOW_SCORE


def judge_cell(judgment: JudgmentRecord | None) -> str:
    """The Review column: the lowest score, ✗ for judge-failed, empty when not judged."""
    if judgment is None:
        return ""
    return "✗" if judgment.failed else str(judgment.lowest)


def matches(
    row: ConversationSummary, words: list[str], show: str, judgment: JudgmentRecord | None = None
) -> bool:
    """Text words must all appear in id, seed, persona, tweet, mark or flags; ``show`` narrows."""
    if show.startswith("judge:") and not judge_matches(judgment, show):
        return False
    if show.startswith("mark:") and row.mark != show[5:]:
        return False
    if show == "flags:any" and not row.flags:
        return False
    if show == "flags:none" and row.flags:
        return False
    if show == "restyled:no" and row.restyled:
        return False
    if show.startswith("flag:") and show[5:] not in row.flags:
        return False
    if not words:
        return True
    hay = " ".join([row.id, row.tweet_id, row.persona, row.tweet, row.mark, *row.flags]).lower()
    return all(w in hay for w in words)


class ReviewPane(ReportsWorkerErrors, Vertical):
    """d deletes (to trash; all rows marked with space, if any), u undoes, f flags, o keeps,
    g regenerates the same seed and persona, r lists again, E empties the trash after asking."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d", "delete", "Delete", tooltip="move to the trash (rows selected with space, or this one)"),
        Binding("u", "undo", "Undo", tooltip="restore the last deleted batch"),
        Binding("f", "mark('flagged')", "Flag", tooltip="flag (again: clear)"),
        Binding("o", "mark('kept')", "Keep", tooltip="keep: mark as good (again: clear)"),
        Binding("g", "regenerate", "Regen", tooltip="regenerate the same seed and persona"),
        Binding("slash", "search", "Filter", tooltip="filter by words in persona, seed, text, flags"),
        Binding("r", "refresh", "Refresh", tooltip="list again (it also follows the disk by itself)"),
        Binding("E", "empty_trash", "Empty trash", tooltip="delete the trash for good, after asking"),
        Binding("space", "select", "Select", show=False, tooltip="select or unselect the row for d"),
    ]

    class Listed(Message):
        def __init__(
            self,
            rows: list[ConversationSummary],
            trash: int,
            unreadable: list[Problem] | None = None,
            generation: int = 0,
            judgments: dict[str, JudgmentRecord] | None = None,
        ) -> None:
            super().__init__()
            self.rows = rows
            self.judgments = judgments or {}
            self.generation = generation
            self.trash = trash
            self.unreadable = unreadable or []

    class Loaded(Message):
        def __init__(
            self, conv_id: str, record: ConversationRecord | None, twin: RestyledRecord | None
        ) -> None:
            super().__init__()
            self.conv_id = conv_id
            self.record = record
            self.twin = twin

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self.rows: list[ConversationSummary] = []
        self.shown: list[ConversationSummary] = []
        self.judgments: dict[str, JudgmentRecord] = {}  # the judge's verdicts, by conversation id
        self.trash = 0
        self.unreadable: dict[str, Problem] = {}  # conversation files that cannot be read, by id
        self.stale = True
        self.last_batch: str | None = None
        self.selected: set[str] = set()  # ids marked with space for a bulk delete
        self._debounce: Timer | None = None
        self._load_timer: Timer | None = None
        self.time_format = "%m-%d %H:%M"
        self._layout: list[tuple[str, int]] = []
        self._go_to: str | None = None  # after an undo: the cursor lands on what came back
        # bumped by every change made here (delete, undo, mark, empty trash): a listing read
        # before it is stale and would bring a deleted row back, so it is dropped and read again
        self._generation = 0

    def compose(self) -> ComposeResult:
        with Horizontal(id="rev-filters"):
            yield Input(placeholder="/ filter: words in persona, seed, text, flags", id="rev-filter")
            setup = self.session.experiment.setup
            criteria = setup.judge.names if setup is not None and setup.judge is not None else []
            yield Select(show_filters(criteria), value="all", allow_blank=False, compact=True, id="rev-show")
        yield KeyTable(id="rev-table", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="rev-detail"):
            conv = StreamView("", id="rev-conv", follow=False)
            conv.border_title = "Conversation"
            yield conv
            twin = StreamView("", id="rev-restyled", follow=False)
            twin.border_title = "Restyled twin"
            yield twin
        yield Static("", id="rev-status", markup=False)

    def on_mount(self) -> None:
        self.relist()

    def on_resize(self) -> None:
        if self.rows:
            self.filter()

    def relist(self) -> None:
        self.stale = False
        if not self.rows:
            self.query_one("#rev-status", Static).update("listing…")
        self._list(self._generation)

    def action_refresh(self) -> None:
        self.relist()
        self.notify("listing the conversations again")

    @background("review-list", "listing conversations")
    def _list(self, generation: int) -> None:
        store = self.session.store
        listing = store.scan()
        judgments = store.judgments()
        self.post_message(
            self.Listed(listing.rows, store.trash_count(), listing.unreadable, generation, judgments)
        )

    @on(Listed)
    def _listed(self, message: Listed) -> None:
        if message.generation != self._generation:
            self.relist()  # read before a change made here: read again rather than undo it on screen
            return
        self.unreadable = {Path(str(p.file)).stem: p for p in message.unreadable}
        self.rows = message.rows + [_unreadable_row(p) for p in message.unreadable]
        self.judgments = message.judgments
        self.trash = message.trash
        self.selected &= {row.id for row in self.rows}
        self.filter()

    @on(Input.Changed, "#rev-filter")
    @on(Select.Changed, "#rev-show")
    def _filter_changed(self) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(0.12, self.filter)

    @on(Input.Submitted, "#rev-filter")
    def _filter_done(self) -> None:
        self.query_one(DataTable).focus()

    def filter(self) -> None:
        words = self.query_one("#rev-filter", Input).value.lower().split()
        show = self.query_one("#rev-show", Select).value
        show = show if isinstance(show, str) else "all"
        table = self.query_one(DataTable)
        current = self.current()
        at = table.cursor_row
        self.shown = [r for r in self.rows if matches(r, words, show, self.judgments.get(r.id))]
        layout = self._columns()
        if layout != self._layout:
            self._layout = layout
            table.clear(columns=True)
            for label, cells in layout:
                table.add_column(label, width=cells, key=label)
        else:
            table.clear()
        table.add_rows(self._cells(row) for row in self.shown[:MAX_ROWS])
        ids = [r.id for r in self.shown[:MAX_ROWS]]
        if self._go_to in ids:
            table.move_cursor(row=ids.index(self._go_to))
            self._go_to = None
        elif current is not None and current.id in ids:
            table.move_cursor(row=ids.index(current.id))  # the same conversation, wherever it moved
        elif ids:
            table.move_cursor(row=min(max(at, 0), len(ids) - 1))
        self._status()
        self._schedule_load()

    def _columns(self) -> list[tuple[str, int]]:
        """Column widths in terminal cells for the table's width: persona first, then flags, tweet."""
        width = self.query_one(DataTable).size.width or self.app.size.width
        shown = self.shown[:MAX_ROWS]
        columns = 8 if width >= WIDE else 7
        judged = bool(self.judgments)  # the judge column (lowest score) once anything is judged
        columns += judged
        room = width - 2 - 2 * columns - sum(w for _, w in FIXED) - 4 - 5  # scrollbar, padding, turns, len
        room -= 3 if judged else 0
        longest = max((len(r.persona) for r in shown), default=7)
        persona = max(7, min(longest, 22, room - 10))
        flags_longest = max((len(self._marks(r)) for r in shown), default=5)
        flags = max(5, room - persona) if columns - judged == 7 else max(5, min(flags_longest, 24))
        layout = [*FIXED, ("persona", persona), ("turn", 4), ("len", 5)]
        layout += [("jdg", 3)] if judged else []
        layout.append(("flags", flags))
        if columns - judged == 8:
            layout.append(("tweet", max(10, room - persona - flags)))
        return layout

    @staticmethod
    def _marks(row: ConversationSummary) -> str:
        return " ".join(([row.mark] if row.mark else []) + row.flags)

    def _cells(self, row: ConversationSummary) -> tuple[str, ...]:
        widths = dict(self._layout)
        cells = [
            "✓" if row.id in self.selected else "",
            time.strftime(self.time_format, time.localtime(row.created_at)),
            row.tweet_id[-8:],
            fit(self._persona_cell(row), widths["persona"]),
            str(row.turns),
            str(row.length),
            *([judge_cell(self.judgments.get(row.id))] if "jdg" in widths else []),
            fit(self._marks(row), widths["flags"]),
        ]
        if "tweet" in widths:
            cells.append(fit(one_line(row.tweet), widths["tweet"]))
        return tuple(cells)

    def _persona_cell(self, row: ConversationSummary) -> str:
        return "(unreadable file)" if row.id in self.unreadable else display_safe(row.persona)

    def _status(self) -> None:
        more = f" (first {MAX_ROWS} drawn)" if len(self.shown) > MAX_ROWS else ""
        selected = f" · {len(self.selected)} selected (d deletes them)" if self.selected else ""
        bad = f" · {len(self.unreadable)} unreadable (flag: unreadable)" if self.unreadable else ""
        self.query_one("#rev-status", Static).update(
            f"{len(self.shown)} of {len(self.rows)} conversations{more}{selected}{bad} · trash {self.trash}"
        )

    def current(self) -> ConversationSummary | None:
        table = self.query_one(DataTable)
        row = table.cursor_row
        if not self.shown or row < 0 or row >= min(len(self.shown), MAX_ROWS):
            return None
        return self.shown[row]

    # detail -------------------------------------------------------------------------------
    @on(DataTable.RowHighlighted, "#rev-table")
    def _highlighted(self) -> None:
        self._schedule_load()

    def _schedule_load(self) -> None:
        if self._load_timer is not None:
            self._load_timer.stop()
        self._load_timer = self.set_timer(0.08, self._load_current)

    def _load_current(self) -> None:
        row = self.current()
        if row is None:
            self.query_one("#rev-conv", StreamView).set_text("", "no conversation selected")
            self.query_one("#rev-restyled", StreamView).set_text("", "")
            return
        self._load(row.id)

    @background("review-load", "reading a conversation")
    def _load(self, conv_id: str) -> None:
        try:
            record, twin = self.session.store.load(conv_id)
        except ConvogenError:
            record, twin = None, None
        self.post_message(self.Loaded(conv_id, record, twin))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        row = self.current()
        if row is None or row.id != message.conv_id:
            return
        conv = self.query_one("#rev-conv", StreamView)
        twin = self.query_one("#rev-restyled", StreamView)
        marks = self._marks(row)
        conv.border_title = display_safe(f"{row.persona} · {row.tweet_id}" + (f" · {marks}" if marks else ""))
        conv.border_subtitle = judge_line(self.judgments.get(row.id))
        problem = self.unreadable.get(message.conv_id)
        if message.record is None and problem is not None:
            conv.set_text("", f"unreadable: {problem}")
        elif message.record is None:
            conv.set_text("", "(the file is gone or unreadable)")
        else:
            conv.set_text(f"User: {message.record.tweet}\n" + message.record.conv)
        twin.set_text(message.twin.restyled_conv if message.twin else "", "(no restyled twin yet)")

    # actions ------------------------------------------------------------------------------
    def action_search(self) -> None:
        self.query_one("#rev-filter", Input).focus()

    def action_select(self) -> None:
        """Mark or unmark the row for a bulk delete, then move down."""
        row = self.current()
        if row is None:
            return
        self.selected ^= {row.id}
        table = self.query_one(DataTable)
        row_key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key
        table.update_cell(row_key, table.ordered_columns[0].key, self._cells(row)[0])
        table.action_cursor_down()
        self._status()

    def action_delete(self) -> None:
        """Move the selected rows (or, with none selected, the current one) to trash, as one batch."""
        current = self.current()
        doomed = [r for r in self.rows if r.id in self.selected] if self.selected else []
        if not doomed and current is not None:
            doomed = [current]
        if not doomed:
            return
        table = self.query_one(DataTable)
        index = table.cursor_row
        self._generation += 1
        try:
            self.last_batch = self.session.store.delete([r.id for r in doomed])
        except ConvogenError as exc:
            self.notify(str(exc), severity="error")
            self.relist()
            return
        self.selected.clear()
        self.trash += len(doomed)
        if len(doomed) == 1 and doomed[0] is current:
            self.rows.remove(current)
            self.shown.remove(current)
            table.remove_row(table.coordinate_to_cell_key((index, 0)).row_key)
            self._status()
            self._schedule_load()
        else:
            gone = {r.id for r in doomed}
            self.rows = [r for r in self.rows if r.id not in gone]
            self.filter()
            table.move_cursor(row=min(index, max(table.row_count - 1, 0)))
        what = doomed[0].id[:8] if len(doomed) == 1 else f"{len(doomed)} conversations"
        self.notify(f"moved {what} to trash · u undoes")

    def action_empty_trash(self) -> None:
        """Delete the trash for good, after a confirmation: nothing in it can be undone after."""
        store = self.session.store
        count = store.trash_count()
        if not count:
            self.notify("the trash is empty")
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                self.notify("trash kept")
                return
            self._generation += 1
            removed = store.empty_trash()
            self.trash = 0
            self.last_batch = None
            self._status()
            self.notify(f"deleted {removed} conversation(s) for good")

        self.app.push_screen(
            ConfirmDialog(f"Delete the {count} conversation(s) in the trash for good? No undo after this."),
            answered,
        )

    def action_undo(self) -> None:
        """Restore the latest delete (the store orders batches by sequence); press again for older ones."""
        self._generation += 1
        try:
            restored = self.session.store.undo()
        except ConvogenError as exc:
            self.notify(str(exc), severity="warning")
            return
        left = len(self.session.store.trash_batches())
        more = f" · {left} older delete(s) left: u again" if left else ""
        self.notify(f"restored {len(restored)} conversation(s){more}")
        self._go_to = restored[0] if restored else None
        self.relist()

    def action_mark(self, mark: str) -> None:
        row = self.current()
        if row is None:
            return
        new = "" if row.mark == mark else mark
        self._generation += 1
        try:
            self.session.store.set_mark(row.id, new)
        except ConvogenError as exc:
            self.notify(str(exc), severity="error")
            return
        row.mark = new
        table = self.query_one(DataTable)
        index = table.cursor_row
        row_key = table.coordinate_to_cell_key((index, 0)).row_key
        table.update_cell(row_key, "flags", self._cells(row)[6])
        self.notify(f"{row.id[:8]}: {new or 'mark cleared'}")

    def action_regenerate(self) -> None:
        row = self.current()
        if row is None:
            return
        try:
            record, _ = self.session.store.load(row.id)
        except ConvogenError as exc:
            self.notify(str(exc), severity="error")
            return
        try:
            persona = self.session.persona(persona_label(row.motivation, row.disposition))
        except ConvogenError:
            persona = Persona(row.motivation, row.disposition, record.motivation, record.disposition)
        self.post_message(RunJobs(self.session.cell_jobs([Cell(Seed(row.tweet_id, record.tweet), persona)])))


def judge_line(judgment: JudgmentRecord | None) -> str:
    """The judge's scores under the conversation, short enough for half of 80 columns."""
    if judgment is None:
        return ""
    if judgment.failed:
        return "judge-failed"
    return "judge " + " ".join(f"{name[:3]} {score}" for name, score in judgment.scores.items())


def _unreadable_row(problem: Problem) -> ConversationSummary:
    """A conversation file that cannot be read, as a row: listed and counted, never hidden."""
    path = Path(str(problem.file))
    try:
        created = path.stat().st_mtime
    except OSError:
        created = 0.0
    return ConversationSummary(
        id=path.stem,
        tweet_id="?",
        tweet=problem.message,
        motivation="",
        disposition="",
        created_at=created,
        turns=0,
        length=0,
        restyled=False,
        mark="",
        flags=["unreadable"],
    )
