"""Seeds pane: the seed file as a table with incremental search; pick one, several, or N at random.

Above the table: the file's size and hydration state. ``h`` hydrates tweet ids through the X API in
a thread worker (core: ``integrations.x_api.hydrate``); its events come back as messages and drive a
progress bar and a rate-limit countdown; Esc stops it between requests, nothing fetched is lost.

Picks are the user's: Enter runs one seed without touching them, ``n`` adds N random seeds (or,
asked, replaces the picks), and they are remembered per experiment (``Session.remember``).
"""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import ClassVar

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Input, ProgressBar, Static

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.making.check import seeds_for
from convogen_tui.core.making.seeds import Seed, SeedFileInfo, SeedSet, seed_file_info
from convogen_tui.integrations.x_api import (
    BatchDone,
    HydrateEvent,
    HydrateFinished,
    HydrateReport,
    HydrateStarted,
    Waiting,
)
from convogen_tui.llm.gguf_info import format_bytes
from convogen_tui.tui.cells import fit, one_line
from convogen_tui.tui.messages import PicksChanged, RunJobs
from convogen_tui.tui.screens.dialogs import AskDialog, ChoiceDialog, HydrateDialog
from convogen_tui.tui.session import Session
from convogen_tui.tui.widgets.lists import KeyTable, enter_binding
from convogen_tui.tui.workers import ReportsWorkerErrors, WorkerFailed, background

MAX_ROWS = 500  # rows drawn at once; the search narrows the rest
FIXED_CELLS = 30  # the pick mark, the id column, cell padding and the scrollbar


class SeedTable(KeyTable):
    BINDINGS: ClassVar[list[BindingType]] = [enter_binding("Run", "run this seed now (the picks stay)")]


class SeedsPane(ReportsWorkerErrors, Vertical):
    """Space picks or unpicks a seed; Enter runs just this one now, leaving the picks as they are."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_pick", "Pick", tooltip="pick or unpick this seed"),
        Binding("n", "pick_random", "Random", tooltip="add N random seeds to the picks (asks: or replace)"),
        Binding("a", "pick_shown", "All shown", tooltip="pick every seed shown (the search narrows)"),
        Binding("c", "clear", "Clear", tooltip="clear the picks"),
        Binding("slash", "search", "Search", tooltip="search ids and texts"),
        Binding("h", "hydrate", "Hydrate", tooltip="fetch tweet texts for ids through the X API"),
        Binding("escape", "cancel_hydrate", "Stop hydrate", show=False),
    ]

    class Loaded(Message):
        def __init__(
            self, seeds: SeedSet | None, error: str | None, info: SeedFileInfo | None = None
        ) -> None:
            super().__init__()
            self.seeds = seeds
            self.error = error
            self.info = info

    class IdsRead(Message):
        """The hydrate worker read the ids file: the info line can count the pending ones."""

        def __init__(self, ids: list[str]) -> None:
            super().__init__()
            self.ids = ids

    class Hydrating(Message):
        """One event of the hydrate worker (started, batch done, waiting, finished)."""

        def __init__(self, event: HydrateEvent) -> None:
            super().__init__()
            self.event = event

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self._laid_out_width = 0  # the width the table was last fitted to
        self.seeds: list[Seed] = []
        self.shown: list[Seed] = []
        self._debounce: Timer | None = None
        self.info: SeedFileInfo | None = None
        self.hydrate_cancel: threading.Event | None = None
        self.hydrate_ids: list[str] | None = None  # the last hydrate's ids: the info shows pending
        self.hydrate_out: Path | None = None
        self.hydrate_ids_path: Path | None = None
        self.last_report: HydrateReport | None = None

    @property
    def hydrating(self) -> bool:
        return self.hydrate_cancel is not None

    def compose(self) -> ComposeResult:
        yield Input(placeholder="/ search id or text (Enter: to the table)", id="seed-search")
        yield Static("", id="seed-info", markup=False)
        yield SeedTable(id="seed-table", cursor_type="row", zebra_stripes=True)
        with Vertical(id="hydrate-box"):
            yield Static("", id="hydrate-status", markup=False)
            yield ProgressBar(total=1, id="hydrate-progress", show_eta=False)
        yield Static("loading seeds…", id="seed-status", markup=False)

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("✓", "tweet_id", "tweet")
        self.query_one("#hydrate-box").display = False
        self.load()

    def load(self) -> None:
        """Read the seed file again (in a worker); the table and picks follow."""
        path = self.session.experiment.seeds_path()
        ids = self.hydrate_ids if self._same(self.hydrate_out, path) else None
        self._load(self.session, path, ids)

    @background("seeds", "reading the seed file")
    def _load(self, session: Session, path: Path | None, ids: list[str] | None) -> None:
        info = None
        if path is not None:
            try:
                info = seed_file_info(path, ids)
            except (ConvogenError, OSError):
                info = None
        try:
            self.post_message(self.Loaded(seeds_for(session.experiment), None, info))
        except ConvogenError as exc:
            self.post_message(self.Loaded(None, str(exc), info))

    @staticmethod
    def _same(a: Path | None, b: Path | None) -> bool:
        return a is not None and b is not None and a.resolve() == b.resolve()

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        self.info = message.info
        self.query_one("#seed-info", Static).update(self.describe_info(message.info))
        if message.seeds is None:
            self.seeds = []
            self.query_one("#seed-status", Static).update(message.error or "no seeds")
            self.query_one(DataTable).clear()
            return
        self.session.set_seeds(message.seeds)
        self.seeds = message.seeds.seeds
        self.filter()
        self.post_message(PicksChanged())

    @staticmethod
    def describe_info(info: SeedFileInfo | None) -> str:
        """One line: file, size, rows, and how far hydration got (failed ids, pending ones)."""
        if info is None:
            return "no seed file in the setup · h hydrates tweet ids into one"
        name = info.path.name
        if not info.exists:
            return f"{name}: not there yet · h hydrates tweet ids into it"
        parts = [f"{name} · {format_bytes(info.size_bytes)} · {info.rows} seeds"]
        if info.ids_total is not None:
            parts.append(f"{info.rows} of {info.ids_total} ids hydrated")
        parts.append(f"{info.failed} failed" if info.failed else "no failed ids")
        if info.pending:
            parts.append(f"{info.pending} pending (h resumes)")
        errors = [p for p in info.problems if p.severity == "error"]
        if errors:
            parts.append(f"{len(errors)} bad row(s)")
        return " · ".join(parts)

    @on(Input.Changed, "#seed-search")
    def _search_changed(self) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(0.1, self.filter)

    @on(Input.Submitted, "#seed-search")
    def _search_done(self) -> None:
        self.query_one(DataTable).focus()

    def filter(self) -> None:
        """Show the seeds matching the search (id or text, case-insensitive)."""
        query = self.query_one("#seed-search", Input).value.strip().lower()
        self.shown = [s for s in self.seeds if not query or query in s.tweet_id or query in s.tweet.lower()]
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        picked = {s.tweet_id for s in self.session.picked}
        cells = self._tweet_cells()
        for seed in self.shown[:MAX_ROWS]:
            table.add_row(
                "✓" if seed.tweet_id in picked else "",
                seed.tweet_id,
                fit(one_line(seed.tweet), cells),
                key=seed.tweet_id,
            )
        if self.shown and row > 0:
            table.move_cursor(row=min(row, min(len(self.shown), MAX_ROWS) - 1))
        self._status()

    def _tweet_cells(self) -> int:
        """The tweet column's width in terminal cells: what the table leaves, so nothing scrolls."""
        width = self.query_one(DataTable).size.width or self.app.size.width
        return max(width - FIXED_CELLS, 20)

    def on_resize(self, event: events.Resize) -> None:
        """Fit the columns to a new width; showing the tab again (same width) redraws nothing."""
        if event.size.width != self._laid_out_width and self.seeds:
            self._laid_out_width = event.size.width
            self.filter()

    def _status(self) -> None:
        shown = len(self.shown)
        more = f" (first {MAX_ROWS} drawn; / narrows)" if shown > MAX_ROWS else ""
        self.query_one("#seed-status", Static).update(
            f"{len(self.session.picked)} picked · {shown} of {len(self.seeds)} shown{more} · "
            "Enter runs one now, picks stay"
        )

    def _current(self) -> Seed | None:
        table = self.query_one(DataTable)
        if not self.shown or table.cursor_row < 0 or table.cursor_row >= min(len(self.shown), MAX_ROWS):
            return None
        return self.shown[table.cursor_row]

    def _set_picked(self, seeds: list[Seed]) -> None:
        self.session.set_picked(seeds)
        self.post_message(PicksChanged())
        table = self.query_one(DataTable)
        picked = {s.tweet_id for s in seeds}
        column = table.ordered_columns[0].key
        for seed in self.shown[:MAX_ROWS]:
            table.update_cell(seed.tweet_id, column, "✓" if seed.tweet_id in picked else "")
        self._status()

    def action_toggle_pick(self) -> None:
        seed = self._current()
        if seed is None:
            return
        picked = list(self.session.picked)
        if seed in picked:
            picked.remove(seed)
        else:
            picked.append(seed)
        self._set_picked(picked)
        self.query_one(DataTable).action_cursor_down()

    def action_pick_shown(self) -> None:
        self._set_picked(list(self.shown))

    def action_clear(self) -> None:
        self._set_picked([])

    def action_search(self) -> None:
        self.query_one("#seed-search", Input).focus()

    def action_pick_random(self) -> None:
        """Add N seeds drawn at random from those shown; with picks already, ask: add or replace."""

        def counted(answer: str | None) -> None:
            if not answer:
                return
            try:
                n = int(answer)
            except ValueError:
                self.notify(f"'{answer}' is not a whole number", severity="error")
                return
            if n < 1:
                self.notify("pick at least 1", severity="error")
                return
            if not self.session.picked:
                self.pick_random(n, replace=False)
                return
            have = len(self.session.picked)
            self.app.push_screen(
                ChoiceDialog(
                    f"{have} seed(s) are picked already.",
                    [
                        ("a", "add", f"add {n} random seed(s) to them"),
                        ("r", "replace", f"replace them with {n} random seed(s)"),
                    ],
                ),
                lambda choice: self.pick_random(n, replace=choice == "replace") if choice else None,
            )

        self.app.push_screen(AskDialog("How many seeds to pick at random (from those shown)?", "5"), counted)

    def pick_random(self, n: int, replace: bool) -> None:
        kept = [] if replace else list(self.session.picked)
        have = {s.tweet_id for s in kept}
        pool = [s for s in (self.shown or self.seeds) if s.tweet_id not in have]
        drawn = random.sample(pool, min(n, len(pool)))
        self._set_picked(kept + drawn)
        short = f" (only {len(drawn)} left to draw)" if len(drawn) < n else ""
        how = "picked" if replace or not kept else "added"
        self.notify(f"{how} {len(drawn)} random seed(s){short}; {len(self.session.picked)} picked")

    def action_run_one(self) -> None:
        """Run the seed under the cursor now, with the persona choice; the picks stay as they are."""
        seed = self._current()
        if seed is None:
            return
        try:
            jobs = self.session.jobs_for([seed])
        except ConvogenError as exc:
            self.notify(str(exc), title="cannot run", severity="error", timeout=8)
            return
        self.post_message(RunJobs(jobs))

    @on(DataTable.RowSelected, "#seed-table")
    def _row_selected(self) -> None:
        self.action_run_one()

    # hydrate ------------------------------------------------------------------------------
    def action_hydrate(self) -> None:
        """Ask for an ids file and an output file, then hydrate in the background."""
        if self.hydrating:
            self.notify("a hydrate is running: Esc on Seeds stops it", severity="warning")
            return
        out = self.hydrate_out or self.session.experiment.seeds_path()
        ids = _shown_path(self.hydrate_ids_path) if self.hydrate_ids_path else ""

        def answered(answer: tuple[str, str] | None) -> None:
            if answer:
                self.start_hydrate(Path(answer[0]).expanduser(), Path(answer[1]).expanduser())

        self.app.push_screen(HydrateDialog(ids, _shown_path(out) if out else ""), answered)

    def start_hydrate(self, ids_path: Path, out: Path) -> None:
        if self.hydrating:
            return
        self.hydrate_ids_path = ids_path
        self.hydrate_out = out
        self.hydrate_cancel = threading.Event()
        box = self.query_one("#hydrate-box")
        box.display = True
        self.query_one("#hydrate-progress", ProgressBar).update(total=None, progress=0)
        self._hydrate_status(f"hydrating {ids_path.name} into {out.name}: reading the ids…")
        self._hydrate(ids_path, out, self.hydrate_cancel)

    @background("hydrate", "hydrating tweet ids")
    def _hydrate(self, ids_path: Path, out: Path, cancel: threading.Event) -> None:
        """Fetch tweets; a failure is reported by the app (fetched rows are already on disk)."""
        from convogen_tui.integrations.x_api import hydrate, read_ids

        ids = read_ids(ids_path)
        self.post_message(self.IdsRead(ids.ids))
        hydrate(ids, out, on_event=lambda e: self.post_message(self.Hydrating(e)), cancel=cancel)

    @on(IdsRead)
    def _ids_read(self, message: IdsRead) -> None:
        self.hydrate_ids = message.ids

    @on(WorkerFailed)
    def _worker_failed(self, message: WorkerFailed) -> None:
        if message.group == "hydrate":
            self.hydrate_cancel = None
            self.query_one("#hydrate-box").display = False
            self.load()

    @on(Hydrating)
    def _hydrating(self, message: Hydrating) -> None:
        event = message.event
        bar = self.query_one("#hydrate-progress", ProgressBar)
        if isinstance(event, HydrateStarted | BatchDone):
            p = event.progress
            bar.update(total=max(p.total, 1), progress=p.done)
            self._hydrate_status(
                f"{p.hydrated} hydrated, {p.failed} failed, {p.pending} pending of {p.total} · "
                f"{p.requests} request(s) · Esc stops"
            )
        elif isinstance(event, Waiting):
            what = "rate limited by the API" if event.reason == "rate limit" else event.reason
            self._hydrate_status(f"{what}: going on in {event.seconds_left} s · Esc stops")
        elif isinstance(event, HydrateFinished):
            self._finished(event.report)

    def _finished(self, report: HydrateReport) -> None:
        self.hydrate_cancel = None
        self.last_report = report
        self.query_one("#hydrate-box").display = False
        p = report.progress
        how = "stopped" if report.cancelled else "done"
        bad = f", {len(report.bad_ids)} bad line(s) in the ids file" if report.bad_ids else ""
        self.notify(
            f"{how}: {p.hydrated} of {p.total} ids hydrated, {p.failed} failed, {p.pending} pending{bad}"
            f"\nwrote {_shown_path(report.out)}"
            + (f" (failures in {report.errors_path.name})" if p.failed else ""),
            title="hydrate",
            severity="warning" if report.cancelled or p.pending else "information",
            timeout=12,
        )
        if self._same(report.out, self.session.experiment.seeds_path()):
            self.session.forget_seeds()  # the experiment's own seed file: read it again
        self.load()

    def action_cancel_hydrate(self) -> None:
        if self.hydrate_cancel is None:
            return
        self.hydrate_cancel.set()
        self._hydrate_status("stopping after the current request…")

    def _hydrate_status(self, text: str) -> None:
        self.query_one("#hydrate-status", Static).update(text)

    def on_unmount(self) -> None:
        if self.hydrate_cancel is not None:
            self.hydrate_cancel.set()


def _shown_path(path: Path) -> str:
    """A path as the user would type it: relative to where the app started, when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
