"""Generate pane: run picked seeds x personas and watch both passes stream in.

A thread worker iterates ``Pipeline.run`` and only appends events to a deque; a 50 ms timer on the
UI thread drains it, joining the chunks of each pass into one append. So the screen is redrawn at
most 20 times a second whatever the token rate, and no widget is touched from the worker.

A backend with several slots (OpenAI-compatible servers: concurrency x endpoints) runs that many
streams at once. One is shown live (the newest started, or the one picked with [ and ]); the others
are listed above the views with their token counts, and their text is kept so a switch shows it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar, Select, Static

from convogen_tui.core.backend import choose_parallel
from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.pipeline import (
    Event,
    Job,
    JobFailed,
    JobFinished,
    JobStarted,
    Pipeline,
    RunFinished,
    RunStarted,
    TokenChunk,
)
from convogen_tui.tui.messages import ConversationsChanged
from convogen_tui.tui.session import ALL, RANDOM, Session
from convogen_tui.tui.widgets.stream_view import StreamView

FLUSH_S = 0.05
MAX_LISTED = 4  # running jobs listed above the views; more are counted

StreamKey = tuple[str, str, int, str]  # seed id, persona label, random seed, phase


def stream_key(job: Job, phase: str) -> StreamKey:
    return (job.seed.tweet_id, job.persona.label, job.random_seed, phase)


@dataclass
class _Stream:
    """One pass in flight: what it has produced so far, for the list and for a switch to it."""

    job: Job
    phase: str
    number: int  # the job's place in the run, from 1
    started: float
    tokens: int = 0
    chunks: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        if len(self.chunks) > 1:
            self.chunks[:] = ["".join(self.chunks)]
        return self.chunks[0] if self.chunks else ""


class _WorkerFailed:
    def __init__(self, message: str) -> None:
        self.message = message


class GeneratePane(Vertical):
    """ctrl+g runs the picked seeds, ctrl+r reruns the last seed and persona, Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel run"),
        Binding("left_square_bracket", "switch(-1)", "Prev job", show=False),
        Binding("right_square_bracket", "switch(1)", "Next job", show=False),
    ]

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self.cancel_event: threading.Event | None = None
        self.events: deque[Event | _WorkerFailed] = deque()
        self.running = False
        self.total = 0
        self.done = 0
        self.failed = 0
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
        self.conv_texts: dict[tuple[str, str, int], str] = {}  # finished conversations awaiting restyle
        self.conv_shows: tuple[str, str, int] | None = None  # whose conversation the left view holds
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
            self.session.persona_choice = event.value

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
        """Run jobs unless a run is going; templates are read again so edits apply, model stays."""
        if self.running:
            self.notify("a run is going: Esc cancels it", severity="warning")
            return False
        if not jobs:
            self.notify("nothing to run", severity="warning")
            return False
        try:
            pipeline = self.session.pipeline()
        except ConvogenError as exc:
            self.notify(str(exc), title="cannot generate", severity="error", timeout=10)
            return False
        self.running = True
        self.total, self.done, self.failed = len(jobs), 0, 0
        self.last_paths = []
        self.streams.clear()
        self.conv_texts.clear()
        self.live, self.pinned, self.conv_shows = None, False, None
        self.parallel = 1
        self.cancel_event = threading.Event()
        self.events.clear()
        progress = self.query_one("#gen-progress", ProgressBar)
        progress.update(total=len(jobs) * 2, progress=0)
        self._status("starting…")
        self._run(pipeline, list(jobs), self.cancel_event)
        return True

    @work(thread=True, exclusive=True, group="generate")
    def _run(self, pipeline: Pipeline, jobs: list[Job], cancel: threading.Event) -> None:
        try:
            # decided here, off the UI thread (it may ask nvidia-smi); RunStarted carries it back
            tokens = pipeline.stream_tokens(jobs)
            parallel = choose_parallel(pipeline.backend, None, len(jobs), tokens).n
            for event in pipeline.run(jobs, restyle=True, cancel=cancel, parallel=parallel):
                self.events.append(event)
        except Exception as exc:  # a model error must reach the user, not kill the app
            self.events.append(_WorkerFailed(f"{type(exc).__name__}: {exc}"))

    def action_cancel(self) -> None:
        if self.running and self.cancel_event is not None:
            self.cancel_event.set()
            self._status("cancelling…")
        else:
            self.notify("no run to cancel")

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
        if stream is None:
            return
        self.job, self.phase, self.tokens = stream.job, stream.phase, stream.tokens
        self.job_index = stream.number
        self.phase_started = stream.started
        job_id = key[:3]  # type: ignore[index]
        if stream.phase == "generate":
            self._view("generate").set_text(stream.text, "")
            self.conv_shows = job_id
            self._view("restyle").clear("waiting for the conversation…")
        else:
            if self.conv_shows != job_id:
                self._view("generate").set_text(self.conv_texts.get(job_id, stream.job.conv or ""), "")
                self.conv_shows = job_id
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
        """With several passes in flight: one line each (live one marked), with its token count."""
        box = self.query_one("#gen-jobs", Static)
        if len(self.streams) < 2:
            box.display = False
            return
        lines = []
        for key, stream in list(self.streams.items())[:MAX_LISTED]:
            mark = "▶" if key == self.live else " "
            lines.append(
                f"{mark} {stream.number}/{self.total} {stream.phase:<8} {stream.tokens:>5} tok · "
                f"{stream.job.label}"
            )
        more = len(self.streams) - MAX_LISTED
        if more > 0:
            lines.append(f"  … {more} more running")
        box.update("\n".join(lines))
        box.display = True

    def _apply(self, event: Event | _WorkerFailed) -> None:
        progress = self.query_one("#gen-progress", ProgressBar)
        if isinstance(event, RunStarted):
            self.job = None
            self.parallel = event.parallel
        elif isinstance(event, JobStarted):
            key = stream_key(event.job, event.phase)
            self.streams[key] = _Stream(event.job, event.phase, event.index + 1, time.perf_counter())
            if event.phase == "generate":
                self.session.last_job = event.job
            if not self.pinned or self.live not in self.streams:
                self.pinned = False
                self._show_live(key)
        elif isinstance(event, JobFinished | JobFailed):
            key = stream_key(event.job, event.phase)
            stream = self.streams.pop(key, None)
            if isinstance(event, JobFinished):
                progress.advance(1)
                self.last_paths.append(str(event.path))
                if event.phase == "generate":
                    self.done += 1
                    if stream is not None:
                        self.conv_texts[key[:3]] = stream.text
                else:
                    self.conv_texts.pop(key[:3], None)
                self.post_message(ConversationsChanged())
            else:
                self.failed += 1
                progress.advance(2 if event.phase == "generate" else 1)
                self.notify(
                    event.message,
                    title=f"{event.phase} failed: {event.job.label}",
                    severity="error",
                    timeout=12,
                )
            if key == self.live and self.streams:
                # the live pass ended: follow the newest still running
                self.pinned = False
                self._show_live(list(self.streams)[-1])
        elif isinstance(event, RunFinished):
            self.running = False
            self.job = None
            self.streams.clear()
            what = "cancelled: no partial file was written" if event.cancelled else "done"
            rate = f" · {event.tokens_per_second:.1f} tok/s" if self.show_rates else ""
            self._status(
                f"{what} · {event.conversations} conversation(s), {event.restyled} restyled, "
                f"{event.failed} failed{rate} · ctrl+r rerun"
            )
            if event.cancelled:
                self.notify("run cancelled; the unfinished pass left no file")
        elif isinstance(event, _WorkerFailed):
            self.running = False
            self.job = None
            self.streams.clear()
            self._status("the run stopped on an error")
            self.notify(
                event.message + "\nCheck the model (llm in the setup, or --model) and retry.",
                title="model error",
                severity="error",
                timeout=15,
            )

    def _status_running(self) -> None:
        assert self.job is not None
        elapsed = time.perf_counter() - self.phase_started
        rate = (
            f" · {self.tokens / elapsed:.1f} tok/s · {elapsed:.1f} s" if self.show_rates and elapsed else ""
        )
        if len(self.streams) > 1:
            where = f"{len(self.streams)} running, showing job {self.job_index}/{self.total}"
            keys = " · [ ] switch"
        else:
            where, keys = f"job {min(self.done + self.failed + 1, self.total)}/{self.total}", ""
        self._status(
            f"{where} · {self.phase} · {self.job.label}\n"
            f"{self.tokens} tokens{rate} · Esc cancels{keys}"
        )

    def _status(self, text: str) -> None:
        self.query_one("#gen-status", Static).update(text)
