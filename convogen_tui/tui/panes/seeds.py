"""Seeds pane: the seed file as a table with incremental search; pick one, several, or N at random.

Above the table: the file's size and hydration state. ``h`` hydrates tweet ids through the X API in
a thread worker (core: ``integrations.x_api.hydrate``); its events come back as messages and drive a
progress bar and a rate-limit countdown; Esc stops it between requests, nothing fetched is lost.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Input, ProgressBar, Static

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.seeds import Seed, SeedFileInfo, seed_file_info
from convogen_tui.integrations.x_api import (
    BatchDone,
    HydrateEvent,
    HydrateFinished,
    HydrateReport,
    HydrateStarted,
    Waiting,
)
from convogen_tui.llm.gguf_info import format_bytes
from convogen_tui.tui.screens.dialogs import AskDialog, HydrateDialog
from convogen_tui.tui.session import Session

MAX_ROWS = 500  # rows drawn at once; the search narrows the rest


def one_line(text: str, width: int = 200) -> str:
    flat = text.replace("\r", "").replace("\n", " ⏎ ")
    return flat if len(flat) <= width else flat[: width - 1] + "…"


class SeedsPane(Vertical):
    """Space picks or unpicks a seed; Enter runs just this one on the Generate screen."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_pick", "Pick"),
        Binding("enter", "run_one", "Run this", show=False),
        Binding("a", "pick_shown", "Pick shown"),
        Binding("n", "pick_random", "N random"),
        Binding("c", "clear", "Clear picks"),
        Binding("slash", "search", "Search"),
        Binding("h", "hydrate", "Hydrate ids"),
        Binding("escape", "cancel_hydrate", "Stop hydrate", show=False),
    ]

    class Loaded(Message):
        def __init__(self, seeds: list[Seed], error: str | None, info: SeedFileInfo | None = None) -> None:
            super().__init__()
            self.seeds = seeds
            self.error = error
            self.info = info

    class Hydrating(Message):
        """One event of the hydrate worker (started, batch done, waiting, finished)."""

        def __init__(self, event: HydrateEvent) -> None:
            super().__init__()
            self.event = event

    class HydrateFailed(Message):
        def __init__(self, message: str, hint: str | None) -> None:
            super().__init__()
            self.message = message
            self.hint = hint

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
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
        yield DataTable(id="seed-table", cursor_type="row", zebra_stripes=True)
        with Vertical(id="hydrate-box"):
            yield Static("", id="hydrate-status", markup=False)
            yield ProgressBar(total=1, id="hydrate-progress", show_eta=False)
        yield Static("loading seeds…", id="seed-status", markup=False)

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("✓", "tweet_id", "tweet")
        self.query_one("#hydrate-box").display = False
        self.load()

    @work(thread=True, exclusive=True, group="seeds")
    def load(self) -> None:
        info = None
        path = self.session.experiment.seeds_path()
        if path is not None:
            ids = self.hydrate_ids if self._same(self.hydrate_out, path) else None
            try:
                info = seed_file_info(path, ids)
            except (ConvogenError, OSError):
                info = None
        try:
            seeds = self.session.seeds().seeds
            self.post_message(self.Loaded(seeds, None, info))
        except ConvogenError as exc:
            self.post_message(self.Loaded([], str(exc), info))

    @staticmethod
    def _same(a: Path | None, b: Path | None) -> bool:
        return a is not None and b is not None and a.resolve() == b.resolve()

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        self.seeds = message.seeds
        self.info = message.info
        self.query_one("#seed-info", Static).update(self.describe_info(message.info))
        if message.error:
            self.query_one("#seed-status", Static).update(message.error)
            self.query_one(DataTable).clear()
            return
        self.filter()

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
        table.clear()
        picked = {s.tweet_id for s in self.session.picked}
        for seed in self.shown[:MAX_ROWS]:
            table.add_row(
                "✓" if seed.tweet_id in picked else "", seed.tweet_id, one_line(seed.tweet), key=seed.tweet_id
            )
        self._status()

    def _status(self) -> None:
        shown = len(self.shown)
        more = f" (first {MAX_ROWS} drawn; search to narrow)" if shown > MAX_ROWS else ""
        self.query_one("#seed-status", Static).update(
            f"{len(self.session.picked)} picked · {shown} of {len(self.seeds)} shown{more} · "
            "space pick · n random · Enter run this"
        )

    def _current(self) -> Seed | None:
        table = self.query_one(DataTable)
        if not self.shown or table.cursor_row < 0 or table.cursor_row >= min(len(self.shown), MAX_ROWS):
            return None
        return self.shown[table.cursor_row]

    def _set_picked(self, seeds: list[Seed]) -> None:
        self.session.picked = seeds
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
        def picked(answer: str | None) -> None:
            if not answer:
                return
            try:
                n = int(answer)
            except ValueError:
                self.notify(f"'{answer}' is not a number", severity="error")
                return
            pool = self.shown or self.seeds
            self._set_picked(random.sample(pool, min(max(n, 0), len(pool))))
            self.notify(f"picked {len(self.session.picked)} seed(s) at random")

        self.app.push_screen(AskDialog("How many seeds to pick at random (from those shown)?", "5"), picked)

    def action_run_one(self) -> None:
        seed = self._current()
        if seed is None:
            return
        self._set_picked([seed])
        self.screen.show_pane("generate")  # type: ignore[attr-defined]

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

    @work(thread=True, exclusive=True, group="hydrate")
    def _hydrate(self, ids_path: Path, out: Path, cancel: threading.Event) -> None:
        from convogen_tui.integrations.x_api import hydrate, read_ids

        try:
            ids = read_ids(ids_path)
            self.hydrate_ids = ids.ids
            hydrate(ids, out, on_event=lambda e: self.post_message(self.Hydrating(e)), cancel=cancel)
        except ConvogenError as exc:
            problem = exc.problems[0] if exc.problems else None
            self.post_message(self.HydrateFailed(str(exc), problem.hint if problem else None))
        except Exception as exc:  # the app lives on; fetched rows are already on disk
            self.post_message(self.HydrateFailed(f"{type(exc).__name__}: {exc}", None))

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
            self.session._seeds = None  # the experiment's own seed file: read it again
        self.load()

    @on(HydrateFailed)
    def _hydrate_failed(self, message: HydrateFailed) -> None:
        self.hydrate_cancel = None
        self.query_one("#hydrate-box").display = False
        hint = f"\nWhat to do: {message.hint}" if message.hint and message.hint not in message.message else ""
        self.notify(message.message + hint, title="hydrate failed", severity="error", timeout=20)
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
