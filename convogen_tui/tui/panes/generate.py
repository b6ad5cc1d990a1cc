"""Generate pane: run picked seeds x personas and watch both passes stream in.

A thread worker iterates ``Pipeline.run`` and only appends events to a deque; a 50 ms timer on the
UI thread drains it, joining the chunks of each pass into one append. So the screen is redrawn at
most 20 times a second whatever the token rate, and no widget is touched from the worker.

A backend with several slots (llama.cpp batching, OpenAI-compatible servers) runs that many streams
at once. One is shown live (the newest started, or the one picked with [ and ]); the others are
listed above the views with their state, and their text is kept so a switch shows it.

Run control: ``s`` skips the live conversation (the others go on; ``core.pipeline.Skips``), Esc
cancels the run. Each stream says what it is doing before its first token: waiting for the model
to load, reading its prompt ("reading prompt 812/1249"), then tokens and tok/s.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar, Select, Static

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.keeping.lock import RunLock
from convogen_tui.core.making.backend import choose_parallel
from convogen_tui.core.making.pipeline import (
    Event,
    Job,
    JobFailed,
    JobFinished,
    JobSkipped,
    JobStarted,
    Pipeline,
    PromptProgress,
    RunFinished,
    RunStarted,
    Skips,
    TokenChunk,
)
from convogen_tui.tui.cells import display_safe
from convogen_tui.tui.messages import ConversationsChanged
from convogen_tui.tui.session import ALL, RANDOM, Session
from convogen_tui.tui.typed import convogen_app
from convogen_tui.tui.widgets.stream_view import StreamView
from convogen_tui.tui.workers import ReportsWorkerErrors, WorkerFailed, background

FLUSH_S = 0.05
BUSY_HINT = "wait for it to finish, or stop that run first"
MAX_LISTED = 4  # running jobs listed above the views; more are counted

StreamKey = tuple[str, str, int, str]  # seed id, persona label, random seed, phase
JobId = tuple[str, str, int]


def stream_key(job: Job, phase: str) -> StreamKey:
    return (job.seed.tweet_id, job.persona.label, job.random_seed, phase)


def job_id(key: StreamKey) -> JobId:
    return (key[0], key[1], key[2])


@dataclass
class _Stream:
    """One pass in flight: what it has produced so far, for the list and for a switch to it."""

    job: Job
    phase: str
    number: int  # the job's place in the run, from 1
    started: float
    prompt_tokens: int = 0
    prompt_read: int | None = None  # prompt tokens read so far, while the backend reports it
    tokens: int = 0
    first: tuple[int, float] | None = None  # token count and backend time of the first chunk
    last_s: float = 0.0  # backend time of the latest chunk
    chunks: list[str] = field(default_factory=list)

    def rate(self) -> float | None:
        """Decode speed from the backend's own clock, once there is half a second to measure."""
        if self.first is None or self.last_s - self.first[1] < 0.5:
            return None
        return (self.tokens - self.first[0]) / (self.last_s - self.first[1])

    @property
    def text(self) -> str:
        if len(self.chunks) > 1:
            self.chunks[:] = ["".join(self.chunks)]
        return self.chunks[0] if self.chunks else ""

    def state(self) -> str:
        """What this pass is doing, in a few words."""
        if self.tokens:
            return f"{self.tokens} tok"
        if self.prompt_read is not None:
            return f"reading prompt {self.prompt_read}/{self.prompt_tokens}"
        if self.prompt_tokens:
            return f"reading prompt ({self.prompt_tokens} tokens)"
        return "starting"


class _WorkerFailed:
    """The run's worker raised: queued after its events, so they are shown first."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint  # what to do, when the error says (a busy experiment, a full disk)


class GeneratePane(ReportsWorkerErrors, Vertical):
    """ctrl+g runs the picked seeds, ctrl+r reruns the last seed and persona, s skips, Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "skip", "Skip", tooltip="skip the conversation shown (no file); the others go on"),
        Binding("escape", "cancel", "Cancel all", tooltip="cancel the run (unfinished passes write no file)"),
        Binding("left_square_bracket", "switch(-1)", "Prev", show=False, tooltip="show the previous stream"),
        Binding("right_square_bracket", "switch(1)", "Next", show=False, tooltip="show the next stream"),
    ]

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self.cancel_event: threading.Event | None = None
        self.skips: Skips | None = None
        self.events: deque[Event | _WorkerFailed] = deque()
        self.running = False
        self.waiting: list[Job] | None = None  # jobs asked for while the model loads
        self.total = 0
        self.done = 0
        self.failed = 0
        self.skipped = 0
        self.phase = ""
        self.job: Job | None = None
        self.job_index = 0
        self.tokens = 0
        self.phase_started = 0.0
        self.last_paths: list[str] = []
        self.parallel = 1
        self.streams: dict[StreamKey, _Stream] = {}  # passes in flight, in start order
        self.live: StreamKey | None = None  # the one in the views
        self.pinned = False  # the user picked the live one ([ or ]): new streams do not take over
        self.conv_texts: dict[JobId, str] = {}  # finished conversations awaiting restyle
        self.conv_shows: JobId | None = None  # whose conversation the left view holds
        self.show_rates = True  # off in snapshot tests: tok/s and time differ run to run

    def compose(self) -> ComposeResult:
        with Horizontal(id="gen-top"):
            yield Static("", id="gen-plan", markup=False)
            yield Select(self._options(), id="gen-persona", allow_blank=False, compact=True)
        yield Static("Idle. ctrl+g: generate the picked seeds", id="gen-status", markup=False)
        yield ProgressBar(total=1, id="gen-progress", show_eta=False)  # a bar with no total animates
        yield Static("", id="gen-jobs", markup=False)
        with Horizontal(id="gen-views"):
            conv = StreamView("The conversation streams here.", id="gen-conv")
            conv.border_title = "Conversation"
            yield conv
            restyled = StreamView("Then its restyled thread streams here.", id="gen-restyled")
            restyled.border_title = "Restyled thread"
            yield restyled

    def on_mount(self) -> None:
        self.refresh_choices()
        self.query_one("#gen-jobs").display = False
        self.set_interval(FLUSH_S, self.drain)
        self.watch(convogen_app(self), "model_status", self._model_status, init=False)

    def _options(self) -> list[tuple[str, str]]:
        options = [("one random persona per seed", RANDOM), ("every persona", ALL)]
        return options + [(p.label, p.label) for p in self.session.personas()]

    def on_unmount(self) -> None:
        """Leaving the experiment (or quitting) stops the run at the next token: no half file."""
        if self.cancel_event is not None:
            self.cancel_event.set()

    def refresh_choices(self) -> None:
        """Persona choices follow the setup; the seed summary follows the picks."""
        options = self._options()
        select = self.query_one("#gen-persona", Select)
        select.set_options(options)
        values = [v for _, v in options]
        select.value = self.session.persona_choice if self.session.persona_choice in values else RANDOM
        self.show_plan()

    def show_plan(self) -> None:
        picked = self.session.picked
        if not picked:
            text = "Seeds: none picked (F4); the first seed is used"
        elif len(picked) == 1:
            text = f"Seed: {picked[0].tweet_id}"
        else:
            text = f"Seeds: {len(picked)} picked"
        self.query_one("#gen-plan", Static).update(text + " · Persona:")

    @on(Select.Changed, "#gen-persona")
    def _persona_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.session.set_persona_choice(event.value)

    # starting -----------------------------------------------------------------------------
    def action_generate(self) -> None:
        try:
            jobs = self.session.jobs_for_picks()
        except ConvogenError as exc:
            self.notify(str(exc), title="cannot generate", severity="error", timeout=8)
            return
        self.start(jobs)

    def action_rerun(self) -> None:
        try:
            job = self.session.rerun_job()
        except ConvogenError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.start([job])

    def start(self, jobs: Sequence[Job]) -> bool:
        """Run jobs unless a run is going; templates are read again so edits apply, model stays.

        While the model is still loading the jobs wait for it (the status says so).
        """
        if self.running or self.waiting is not None:
            self.notify("a run is going: s skips one, Esc cancels it", severity="warning")
            return False
        if not jobs:
            self.notify("nothing to run", severity="warning")
            return False
        app = convogen_app(self)
        if self.session.backend is None and app.model_loading:
            self.waiting = list(jobs)
            self.total = len(jobs)
            self.query_one("#gen-progress", ProgressBar).update(total=None)
            self._status(
                f"job 1/{len(jobs)} waits for the model to load",
                f"{app.model_status} · Esc cancels",
            )
            return True
        try:
            pipeline = self.session.pipeline()
        except ConvogenError as exc:
            self.notify(str(exc), title="cannot generate", severity="error", timeout=10)
            return False
        self.running = True
        self.total, self.done, self.failed, self.skipped = len(jobs), 0, 0, 0
        self.last_paths = []
        self.streams.clear()
        self.conv_texts.clear()
        self.live, self.pinned, self.conv_shows = None, False, None
        self.parallel = 1
        self.cancel_event = threading.Event()
        self.skips = Skips()
        self.events.clear()
        progress = self.query_one("#gen-progress", ProgressBar)
        progress.update(total=len(jobs) * 2, progress=0)
        self._status(f"job 1/{len(jobs)} starting", "preparing the model context… · Esc cancels")
        self._run(pipeline, list(jobs), self.cancel_event, self.skips)
        return True

    def _model_status(self, _status: str) -> None:
        """The model finished loading (or failed): start the run that waited for it."""
        if self.waiting is None:
            return
        if self.session.backend is not None:
            jobs, self.waiting = self.waiting, None
            self.start(jobs)
        elif not convogen_app(self).model_loading:
            self.waiting = None
            self.query_one("#gen-progress", ProgressBar).update(total=1, progress=0)
            self._status("not started: the model did not load", "see the notification; F7 picks another")

    @background("generate", "generating")
    def _run(self, pipeline: Pipeline, jobs: list[Job], cancel: threading.Event, skips: Skips) -> None:
        # one writer per experiment: the same lock as `convogen generate` (core.lock); a busy
        # experiment or an unwritable folder raises, and the app reports it in one notification
        with RunLock(pipeline.experiment.dir).acquire(busy_hint=BUSY_HINT):
            pipeline.store.prepare_run()  # writable, space left, crash leftovers removed
            # decided here, off the UI thread (it may ask nvidia-smi); RunStarted carries it back
            tokens = pipeline.stream_tokens(jobs)
            parallel = choose_parallel(pipeline.backend, None, len(jobs), tokens).n
            for event in pipeline.run(jobs, restyle=True, cancel=cancel, parallel=parallel, skips=skips):
                self.events.append(event)

    @on(WorkerFailed)
    def _worker_failed(self, message: WorkerFailed) -> None:
        if message.group == "generate":
            self.events.append(_WorkerFailed(message.message, message.hint))

    def action_cancel(self) -> None:
        if self.waiting is not None:
            self.waiting = None
            self.query_one("#gen-progress", ProgressBar).update(total=1, progress=0)
            self._status("cancelled before it started", "ctrl+g generates")
            return
        if self.running and self.cancel_event is not None:
            self.cancel_event.set()
            self._status("cancelling…", "the unfinished pass writes no file")
        else:
            self.notify("no run to cancel")

    def action_skip(self) -> None:
        """Stop the live conversation (no file); the others in the run go on."""
        stream = self.streams.get(self.live) if self.live is not None else None
        if not self.running or stream is None or self.skips is None:
            self.notify("nothing running to skip")
            return
        self.skips.skip(stream.number - 1)
        self.notify(f"skipping job {stream.number}: {stream.job.label}")

    # draining -----------------------------------------------------------------------------
    def drain(self) -> None:
        """Apply queued events in order; consecutive chunks of the live pass become one append."""
        if not self.events:
            if self.running and self.job is not None:
                self._status_running()
            return
        pending: list[str] = []
        pending_phase = ""

        def flush() -> None:
            if pending:
                self._view(pending_phase).append("".join(pending))
                pending.clear()

        while self.events:
            event = self.events.popleft()
            if isinstance(event, TokenChunk):
                key = stream_key(event.job, event.phase)
                stream = self.streams.get(key)
                if stream is not None:
                    stream.chunks.append(event.text)
                    stream.tokens = event.n_tokens
                    stream.last_s = event.elapsed_s
                    if stream.first is None:
                        stream.first = (event.n_tokens, event.elapsed_s)
                if key == self.live:
                    if event.phase != pending_phase:
                        flush()
                        pending_phase = event.phase
                    pending.append(event.text)
                    self.tokens = event.n_tokens
                continue
            flush()
            self._apply(event)
        flush()
        self._show_jobs()
        if self.running and self.job is not None:
            self._status_running()

    def _view(self, phase: str) -> StreamView:
        return self.query_one("#gen-conv" if phase == "generate" else "#gen-restyled", StreamView)

    def _show_live(self, key: StreamKey | None) -> None:
        """Put a pass in the views: its text so far, and for a restyle the conversation it restyles."""
        self.live = key
        stream = self.streams.get(key) if key is not None else None
        if stream is None or key is None:
            return
        self.job, self.phase, self.tokens = stream.job, stream.phase, stream.tokens
        self.job_index = stream.number
        self.phase_started = stream.started
        ident = job_id(key)
        if stream.phase == "generate":
            self._view("generate").set_text(stream.text, "")
            self.conv_shows = ident
            self._view("restyle").clear("waiting for the conversation…")
        else:
            if self.conv_shows != ident:
                self._view("generate").set_text(self.conv_texts.get(ident, stream.job.conv or ""), "")
                self.conv_shows = ident
            self._view("restyle").set_text(stream.text, "")

    def action_switch(self, step: int) -> None:
        """Show the previous or next running job live; it stays live until it ends."""
        keys = list(self.streams)
        if len(keys) < 2:
            return
        at = keys.index(self.live) if self.live in keys else -1
        self.pinned = True
        self._show_live(keys[(at + step) % len(keys)])
        self._show_jobs()

    def _show_jobs(self) -> None:
        """With several passes in flight: one line each (live one marked), with what it is doing."""
        box = self.query_one("#gen-jobs", Static)
        if len(self.streams) < 2:
            box.display = False
            return
        lines = []
        for key, stream in list(self.streams.items())[:MAX_LISTED]:
            mark = "▶" if key == self.live else " "
            state = f"{stream.tokens:>5} tok" if stream.tokens else stream.state()
            line = f"{mark} {stream.number}/{self.total} {stream.phase:<8} {state} · {stream.job.label}"
            lines.append(display_safe(line))
        more = len(self.streams) - MAX_LISTED
        if more > 0:
            lines.append(f"  … {more} more running")
        box.update("\n".join(lines))
        box.display = True

    def _ended(self, key: StreamKey) -> _Stream | None:
        """A pass ended: drop it, and if it was live follow the newest still running."""
        stream = self.streams.pop(key, None)
        if key == self.live and self.streams:
            self.pinned = False
            self._show_live(list(self.streams)[-1])
        return stream

    def _apply(self, event: Event | _WorkerFailed) -> None:
        progress = self.query_one("#gen-progress", ProgressBar)
        if isinstance(event, RunStarted):
            self.job = None
            self.parallel = event.parallel
            self._status(f"job 1/{self.total} starting", "reading the first prompt… · Esc cancels")
        elif isinstance(event, JobStarted):
            key = stream_key(event.job, event.phase)
            self.streams[key] = _Stream(
                event.job, event.phase, event.index + 1, time.perf_counter(), event.prompt_tokens
            )
            if event.phase == "generate":
                self.session.last_job = event.job
            if not self.pinned or self.live not in self.streams:
                self.pinned = False
                self._show_live(key)
        elif isinstance(event, PromptProgress):
            stream = self.streams.get(stream_key(event.job, event.phase))
            if stream is not None:
                stream.prompt_read, stream.prompt_tokens = event.done, event.total
        elif isinstance(event, JobFinished):
            key = stream_key(event.job, event.phase)
            stream = self._ended(key)
            progress.advance(1)
            self.last_paths.append(str(event.path))
            if event.phase == "generate":
                self.done += 1
                if stream is not None:
                    self.conv_texts[job_id(key)] = stream.text
            else:
                self.conv_texts.pop(job_id(key), None)
            self.post_message(ConversationsChanged())
        elif isinstance(event, JobSkipped):
            self._ended(stream_key(event.job, event.phase))
            self.skipped += 1
            progress.advance(2 if event.phase == "generate" and not event.job.conv_id else 1)
            self.notify(f"skipped {event.phase}: {event.job.label} (no file written)")
        elif isinstance(event, JobFailed):
            self._ended(stream_key(event.job, event.phase))
            self.failed += 1
            progress.advance(2 if event.phase == "generate" else 1)
            self.notify(
                event.message,
                title=f"{event.phase} failed: {event.job.label}",
                severity="error",
                timeout=12,
            )
        elif isinstance(event, RunFinished):
            self._run_over()
            what = "cancelled: no partial file was written" if event.cancelled else "done"
            rate = f" · {event.tokens_per_second:.1f} tok/s" if self.show_rates else ""
            skipped = f", {event.skipped} skipped" if event.skipped else ""
            self._status(
                f"{what} · {event.conversations} conversation(s), {event.restyled} restyled, "
                f"{event.failed} failed{skipped}",
                f"ctrl+g generate · ctrl+r rerun{rate}",
            )
            if event.cancelled:
                self.notify("run cancelled; the unfinished pass left no file")
        elif isinstance(event, _WorkerFailed):
            self._run_over()
            what_to_do = event.hint or "check the model (llm in the setup, or F7) and retry"
            self._status("the run stopped on an error", what_to_do)

    def _run_over(self) -> None:
        self.running = False
        self.job = None
        self.streams.clear()
        self._show_jobs()

    def _status_running(self) -> None:
        """Two lines that fit 80 columns: where the run is, then what the live pass is doing."""
        assert self.job is not None
        stream = self.streams.get(self.live) if self.live is not None else None
        if len(self.streams) > 1:
            where = f"{len(self.streams)} running · job {self.job_index}/{self.total} shown"
            keys = " · [ ] switch"
        else:
            at = min(self.done + self.failed + self.skipped + 1, self.total)
            where, keys = f"job {at}/{self.total}", ""
        if stream is not None and not stream.tokens:
            state = stream.state()
        else:
            state = f"{self.tokens} tokens"
            if self.show_rates and stream is not None:
                rate = stream.rate()
                took = time.perf_counter() - stream.started
                speed = f"{rate:.1f} tok/s" if rate is not None else "-- tok/s"
                state = f"{speed} · {self.tokens} tokens · {took:.0f} s"
        self._status(
            f"{where} · {self.phase} · {self.job.label}",
            f"{state} · s skip · Esc cancel all{keys}",
        )

    def _status(self, first: str, second: str = "") -> None:
        self.query_one("#gen-status", Static).update(display_safe(f"{first}\n{second}".rstrip("\n")))
