"""Review pane: the experiment's conversations, each beside its restyled twin; delete, undo, mark.

The listing comes from the store's index (one worker call, re-reading only changed files); filtering
works on the summaries in memory, on lower-cased text prepared by the worker once per listing, and
draws at most MAX_ROWS rows, so a keystroke never re-reads files, even with 100,000 conversations.
The experiment screen asks for a new listing whenever the conversation folders change (this app, a
`convogen mark` in another shell, a finished restyle), and ``r`` lists again on demand. A listing
that finds the index's generation, the trash, the judgments and the texts as they were redraws
nothing; one asked for while another runs waits for it and runs once, so a burst of changes costs
one listing, and an idle pane costs nothing. Columns are sized in terminal cells to the table's
width, so nothing runs off the right edge.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from textual import events, on
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
from convogen_tui.core.keeping.tracked import stamp
from convogen_tui.core.keeping.versions import experiment_texts, version_names
from convogen_tui.core.making.experiment import Persona
from convogen_tui.core.making.pairing import cells_to_pair
from convogen_tui.core.making.planner import Cell
from convogen_tui.core.making.seeds import Seed
from convogen_tui.core.persona import persona_label
from convogen_tui.tui.cells import display_safe, fit, one_line
from convogen_tui.tui.messages import RunJobs
from convogen_tui.tui.screens.dialogs import ConfirmDialog
from convogen_tui.tui.session import Session
from convogen_tui.tui.typed import convogen_app
from convogen_tui.tui.widgets.lists import KeyTable
from convogen_tui.tui.widgets.stream_view import StreamView
from convogen_tui.tui.workers import ReportsWorkerErrors, background

MAX_ROWS = 1000
FIXED = [("✓", 1), ("time", 11), ("seed", 8), ("ver", 3)]  # then persona, turns, len, flags, tweet
WIDE = 110  # from this many columns the table also shows the seed's text
SHOW_FILTERS: list[tuple[str, str]] = [
    ("all", "all"),
    ("flagged", "mark:flagged"),
    ("kept", "mark:kept"),
    ("unmarked", "mark:"),
    ("any flag", "flags:any"),
    ("no flag", "flags:none"),
    ("not restyled", "restyled:no"),
    ("stale", "version:stale"),  # made by a version other than the current texts
    *[(rule, f"flag:{rule}") for rule in RULE_NAMES],  # one per quality rule (convogen quality --rules)
    ("unreadable", "flag:unreadable"),  # conversation files that cannot be read
]
LOW_SCORE = 2  # the judge filters show pairs scored this or lower
JUDGE_FILTERS: list[tuple[str, str]] = [
    (f"any score <= {LOW_SCORE}", "judge:low"),
    ("judge-failed", "judge:failed"),
    ("not judged", "judge:none"),
]


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


# two or three letters a flag, so a row's flags fit a narrow column; the detail pane names them in full
FLAG_CODES = {
    "no-dialog": "nd",
    "short": "sh",
    "extra-turns": "xt",
    "user-first": "uf",
    "alternation": "al",
    "repetition": "rp",
    "wrapper": "wr",
    "truncated": "tr",
    "empty-message": "em",
    "restyle-no-dialog": "rnd",
    "restyle-too-long": "rlo",
    "restyle-mismatch": "rmm",
    "restyle-copy": "rcp",
    "restyle-emoji": "rej",
    "restyle-wrapper": "rwr",
    "restyle-truncated": "rtr",
    "restyle-empty-message": "rem",
    "near-duplicate": "dup",
    "unreadable": "unr",
}
SHORT_ID = 8  # the fewest characters of an id shown: a unique prefix, as convogen show/mark/delete take


def flag_code(flag: str) -> str:
    """A flag's short code; a rule added later gets its words' initials."""
    return FLAG_CODES.get(flag) or "".join(word[0] for word in flag.split("-") if word)


def flags_cell(mark: str, flags: list[str], cells: int) -> str:
    """The mark and flags in full when they fit, else the mark, the count and each flag's code."""
    full = " ".join(([mark] if mark else []) + flags)
    if len(full) <= cells or not flags:
        return fit(full, cells)
    return fit(" ".join(([mark] if mark else []) + [f"{len(flags)}:", *map(flag_code, flags)]), cells)


def short_id(conv_id: str, ids: list[str]) -> str:
    """The shortest prefix of at least SHORT_ID characters that no other id starts with."""
    length = SHORT_ID
    for other in ids:
        if other == conv_id:
            continue
        common = 0
        for a, b in zip(conv_id, other, strict=False):
            if a != b:
                break
            common += 1
        length = max(length, common + 1)
    return conv_id[:length]


def haystack(row: ConversationSummary) -> str:
    """What the filter's words are looked for in, lower-cased (computed once per listing)."""
    return " ".join([row.id, row.tweet_id, row.persona, row.tweet, row.mark, *row.flags]).lower()


def matches(
    row: ConversationSummary,
    words: list[str],
    show: str,
    judgment: JudgmentRecord | None = None,
    hay: str | None = None,
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
    hay = haystack(row) if hay is None else hay
    return all(w in hay for w in words)


def show_options(versions: list[str], criteria: Sequence[str] = ()) -> list[tuple[str, str]]:
    """The drop-down's choices: marks, flags, "stale", one per version (v1, v2...), and with judge
    criteria the judge's filters (any score <= 2, judge-failed, not judged, each criterion <= 2)."""
    judged = [*JUDGE_FILTERS, *[(f"{name} <= {LOW_SCORE}", f"judge:{name}") for name in criteria]]
    per_version = [(f"version {v}", f"version:{v}") for v in versions]
    return [*SHOW_FILTERS[:8], *per_version, *(judged if criteria else []), *SHOW_FILTERS[8:]]


class ReviewPane(ReportsWorkerErrors, Vertical):
    """d deletes (to trash; all rows marked with space, if any), u undoes, f flags, o keeps,
    g regenerates the same seed and persona, r lists again, E empties the trash after asking,
    c compares the row's version with the current one, p reruns cells with the current texts."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d", "delete", "Delete", tooltip="move to the trash (rows selected with space, or this one)"),
        Binding("u", "undo", "Undo", tooltip="restore the last deleted batch"),
        Binding("f", "mark('flagged')", "Flag", tooltip="flag (again: clear)"),
        Binding("o", "mark('kept')", "Keep", tooltip="keep: mark as good (again: clear)"),
        Binding("g", "regenerate", "Regen", tooltip="regenerate the same seed and persona"),
        Binding("slash", "search", "Filter", tooltip="filter by words in persona, seed, text, flags"),
        Binding("r", "refresh", "Refresh", tooltip="list again (it also follows the disk by itself)"),
        Binding("E", "empty_trash", "Empty trash", tooltip="delete the trash for good, after asking"),
        Binding("c", "compare", "Compare", tooltip="compare this row's version with the current texts'"),
        Binding(
            "p",
            "pair",
            "Pair rerun",
            show=False,
            tooltip="rerun the selected rows' cells (or this one) with the current templates, same seeds",
        ),
        Binding("space", "select", "Select", show=False, tooltip="select or unselect the row for d"),
        Binding(
            "y", "copy_id", "Copy id", show=False, tooltip="copy the conversation's id (for convogen show)"
        ),
    ]

    class Listed(Message):
        """A listing (``rows`` None: nothing changed since the one shown)."""

        def __init__(
            self,
            rows: list[ConversationSummary] | None,
            trash: int,
            unreadable: list[Problem] | None = None,
            generation: int = 0,
            versions: dict[str, str] | None = None,
            current: str | None = None,
            judgments: dict[str, JudgmentRecord] | None = None,
            seen: object = None,
            hay: list[str] | None = None,
        ) -> None:
            super().__init__()
            self.seen = seen
            self.hay = hay or []
            self.versions = versions or {}  # version id -> name (v1, v2...)
            self.current = current  # the version id of the texts on disk now
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
        self._laid_out_width = 0  # the width the table was last fitted to
        self.rows: list[ConversationSummary] = []
        self.shown: list[ConversationSummary] = []
        self.judgments: dict[str, JudgmentRecord] = {}  # the judge's verdicts, by conversation id
        setup = session.experiment.setup
        self.criteria = setup.judge.names if setup is not None and setup.judge is not None else []
        self.trash = 0
        self.unreadable: dict[str, Problem] = {}  # conversation files that cannot be read, by id
        self.stale = True
        self.last_batch: str | None = None
        self.selected: set[str] = set()  # ids marked with space for a bulk delete
        self._debounce: Timer | None = None
        self._load_timer: Timer | None = None
        self.time_format = "%m-%d %H:%M"
        self._layout: list[tuple[str, int]] = []
        self._detail_id: str | None = None  # whose conversation the detail pane shows
        self._go_to: str | None = None  # after an undo: the cursor lands on what came back
        # bumped by every change made here (delete, undo, mark, empty trash): a listing read
        # before it is stale and would bring a deleted row back, so it is dropped and read again
        self._generation = 0
        self.versions: dict[str, str] = {}
        self.current_version: str | None = None
        self._hay: dict[str, str] = {}  # id -> lower-cased text the filter looks in
        self._seen: object = None  # what the listing shown was made from (see _list)
        self._listing = False  # a listing worker runs
        self._list_again = False  # asked for while it ran: one more after it
        self.listings = 0  # listings started (the idle test counts them)

    def compose(self) -> ComposeResult:
        with Horizontal(id="rev-filters"):
            yield Input(placeholder="/ filter: words in persona, seed, text, flags", id="rev-filter")
            yield Select(
                show_options([], self.criteria), value="all", allow_blank=False, compact=True, id="rev-show"
            )
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

    def on_resize(self, event: events.Resize) -> None:
        """Fit the columns to a new width; showing the tab again (same width) redraws nothing."""
        if event.size.width != self._laid_out_width and self.rows:
            self._laid_out_width = event.size.width
            self.filter()

    def _changed_here(self) -> None:
        """A change made here (delete, undo, mark, empty trash): the rows shown are no longer the
        last listing's, so the next listing redraws whatever the index says."""
        self._generation += 1
        self._seen = None

    def relist(self, force: bool = False) -> None:
        """List again in a worker: at most one at a time, and one more if asked meanwhile."""
        self.stale = False
        if force:
            self._seen = None
        if self._listing:
            self._list_again = True
            return
        if not self.rows:
            self.query_one("#rev-status", Static).update("listing…")
        self._listing = True
        self.listings += 1
        self._list(self._generation, self._seen)

    def action_refresh(self) -> None:
        self.relist(force=True)
        self.notify("listing the conversations again")

    @background("review-list", "listing conversations")
    def _list(self, generation: int, last_seen: object) -> None:
        """Refresh the index (cheap when nothing changed); list, and post the rows, only when its
        generation, the trash, the judgments or the texts on disk moved."""
        store = self.session.store
        message = self.Listed(None, 0, generation=generation, seen=last_seen)
        try:
            index_generation, unreadable = store.refresh(full=last_seen is None)  # r: stat every file
            trash = store.trash_count()
            current = experiment_texts(self.session.experiment)
            current_id = current.id if current is not None else None
            seen = (
                index_generation,
                trash,
                tuple(map(str, unreadable)),
                stamp(store.judgments_dir),
                current_id,
            )
            if seen != last_seen:
                listing = store.scan()
                message = self.Listed(
                    listing.rows,
                    trash,
                    listing.unreadable,
                    generation,
                    version_names(store.dir, listing.rows),
                    current_id,
                    store.judgments(),
                    seen,
                    [haystack(row) for row in listing.rows],
                )
        finally:
            self.post_message(message)

    @on(Listed)
    def _listed(self, message: Listed) -> None:
        self._listing = False
        if message.generation != self._generation:
            self.relist(force=True)  # read before a change made here: read again, not undo it on screen
            return
        if message.rows is not None:
            self._show_listing(message)
        if self._list_again:
            self._list_again = False
            self.relist()

    def _show_listing(self, message: Listed) -> None:
        assert message.rows is not None
        self._seen = message.seen
        self.unreadable = {Path(str(p.file)).stem: p for p in message.unreadable}
        unreadable = [_unreadable_row(p) for p in message.unreadable]
        self.rows = message.rows + unreadable
        self._hay = dict(zip((r.id for r in message.rows), message.hay, strict=True))
        self._hay |= {row.id: haystack(row) for row in unreadable}
        self.judgments = message.judgments
        self.trash = message.trash
        self.selected &= {row.id for row in self.rows}
        if set(message.versions.values()) != set(self.versions.values()):
            show = self.query_one("#rev-show", Select)
            value = show.value
            names = sorted(set(message.versions.values()), key=lambda v: int(v[1:]) if v[1:].isdigit() else 0)
            show.set_options(show_options(names, self.criteria))
            options = {v for _, v in show_options(names, self.criteria)}
            show.value = value if value in options else "all"
        self.versions, self.current_version = message.versions, message.current
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
        self.shown = self._matching(words, show)
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

    def _stale(self, row: ConversationSummary) -> bool:
        """Made by a version other than the current texts' (unreadable files have none)."""
        current = self.current_version
        return current is not None and row.id not in self.unreadable and row.version != current

    def _matching(self, words: list[str], show: str) -> list[ConversationSummary]:
        """The rows the filter shows: the words on the prepared text first (what a keystroke
        changes), then the drop-down's choice and version words, each pass over what is left."""
        hay, rows = self._hay, self.rows
        if words:
            rows = [r for r in rows if all(w in (hay.get(r.id) or haystack(r)) for w in words)]
        if show != "all":
            rows = [r for r in rows if matches(r, [], show, self.judgments.get(r.id))]
        versions = set(self.versions.values())
        if show.startswith("version:") or any(w in versions for w in words):
            rows = [r for r in rows if self._version_ok(r, words, show)]
        return rows if rows is not self.rows else list(rows)  # shown is changed apart from rows

    def _version_ok(self, row: ConversationSummary, words: list[str], show: str) -> bool:
        """The version filters ("stale", "version v2"); a word naming a version (v2) matches it."""
        name = self.versions.get(row.version, "")
        if show == "version:stale" and not self._stale(row):
            return False
        if show.startswith("version:v") and name != show[8:]:
            return False
        named = [w for w in words if re.fullmatch(r"v\d+", w) and w in self.versions.values()]
        return all(w == name for w in named)

    def _columns(self) -> list[tuple[str, int]]:
        """Column widths in terminal cells for the table's width: persona first, then flags, tweet."""
        width = self.query_one(DataTable).size.width or self.app.size.width
        shown = self.shown[:MAX_ROWS]
        columns = 9 if width >= WIDE else 8
        judged = bool(self.judgments)  # the judge column (lowest score) once anything is judged
        columns += judged
        room = width - 2 - 2 * columns - sum(w for _, w in FIXED) - 4 - 5  # scrollbar, padding, turns, len
        room -= 3 if judged else 0
        longest = max((len(r.persona) for r in shown), default=7)
        persona = max(7, min(longest, 22, room - 13))
        flags_longest = max((len(self._marks(r)) for r in shown), default=5)  # in full when it fits
        flags = max(5, room - persona) if columns - judged == 8 else max(5, min(flags_longest, 24))
        layout = [*FIXED, ("persona", persona), ("turn", 4), ("len", 5)]
        layout += [("jdg", 3)] if judged else []
        layout.append(("flags", flags))
        if columns - judged == 9:
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
            fit(self.versions.get(row.version, ""), widths["ver"]),
            fit(self._persona_cell(row), widths["persona"]),
            str(row.turns),
            str(row.length),
            *([judge_cell(self.judgments.get(row.id))] if "jdg" in widths else []),
            flags_cell(row.mark, row.flags, widths["flags"]),
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
        stale = sum(1 for r in self.rows if self._stale(r))
        bad += f" · {stale} stale" if stale else ""
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
        """Title the detail with the highlighted row at once, its text to follow from a worker: the
        detail is never another row's, not even for the moment after the rows changed under it."""
        row = self.current()
        conv = self.query_one("#rev-conv", StreamView)
        if row is None or row.id != self._detail_id:
            self._detail_id = row.id if row is not None else None
            conv.set_text("", "reading…" if row is not None else "no conversation selected")
            self.query_one("#rev-restyled", StreamView).set_text("", "")
        conv.border_title = self._detail_title(row) if row is not None else "Conversation"
        if self._load_timer is not None:
            self._load_timer.stop()
        if row is not None:
            self._load_timer = self.set_timer(0.08, self._load_current)

    def _detail_title(self, row: ConversationSummary) -> str:
        """The id convogen show/mark/delete take (y copies it), then the persona."""
        return display_safe(f"{short_id(row.id, [r.id for r in self.rows])} · {row.persona}")

    def _load_current(self) -> None:
        row = self.current()
        if row is not None:
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
        conv.border_title = self._detail_title(row)
        judgment = self.judgments.get(row.id)
        about = " · ".join(
            [
                f"seed {row.tweet_id}",
                *([row.mark] if row.mark else []),
                *([", ".join(row.flags)] if row.flags else []),
                *([judge_line(judgment)] if judgment is not None else []),
            ]
        )
        problem = self.unreadable.get(message.conv_id)
        if message.record is None and problem is not None:
            conv.set_text("", f"unreadable: {problem}")
        elif message.record is None:
            conv.set_text("", "(the file is gone or unreadable)")
        else:
            conv.set_text(f"{about}\nUser: {message.record.tweet}\n" + message.record.conv)
        twin.set_text(message.twin.restyled_conv if message.twin else "", "(no restyled twin yet)")

    def action_copy_id(self) -> None:
        """Copy the highlighted conversation's id (the terminal's clipboard, OSC 52)."""
        row = self.current()
        if row is None:
            self.notify("no conversation highlighted")
            return
        self.app.copy_to_clipboard(row.id)
        short = short_id(row.id, [r.id for r in self.rows])
        self.notify(f"copied the id {row.id} · convogen show {self.session.experiment.name} {short}")

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
        self._changed_here()
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
            self._changed_here()
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
        self._changed_here()
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
        self._changed_here()
        try:
            self.session.store.set_mark(row.id, new)
        except ConvogenError as exc:
            self.notify(str(exc), severity="error")
            return
        row.mark = new
        self._hay[row.id] = haystack(row)
        table = self.query_one(DataTable)
        index = table.cursor_row
        row_key = table.coordinate_to_cell_key((index, 0)).row_key
        table.update_cell(row_key, "flags", self._cells(row)[7])
        self._schedule_load()  # the detail names the mark too
        self.notify(f"{row.id[:8]}: {new or 'mark cleared'}")

    def action_compare(self) -> None:
        """Compare this row's version with the current texts' (the palette: the latest two)."""
        row = self.current()
        name = self.versions.get(row.version) if row is not None else None
        convogen_app(self).action_compare(name)

    def action_pair(self) -> None:
        """Rerun the cells of the selected rows (or this one) with the current templates, each with
        the random seed its conversation recorded, so the texts are the only difference."""
        rows = [r for r in self.rows if r.id in self.selected] or ([self.current()] if self.current() else [])
        rows = [r for r in rows if r is not None and r.id not in self.unreadable]
        if not rows:
            return
        cells, problems = cells_to_pair(self.session.experiment, self.session.store, rows)
        for problem in problems[:1]:
            self.notify(f"not rerun, unreadable: {problem}", severity="warning")
        if cells:
            self.post_message(RunJobs(self.session.cell_jobs([cell.cell for cell in cells])))

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
