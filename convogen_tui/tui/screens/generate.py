"""Generate pane: run picked seeds x personas and watch both passes stream in.

A thread worker iterates ``Pipeline.run`` and only appends events to a deque; a 50 ms timer on the
UI thread drains it, joining the chunks of each pass into one append. So the screen is redrawn at
most 20 times a second whatever the token rate, and no widget is touched from the worker.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar, Select, Static

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.pipeline import (
    Event,
    Job,
    JobFailed,
    JobFinished,
    JobStarted,
    RunFinished,
    RunStarted,
    TokenChunk,
)
from convogen_tui.tui.messages import ConversationsChanged
from convogen_tui.tui.session import ALL, RANDOM, Session
from convogen_tui.tui.widgets.stream_view import StreamView

FLUSH_S = 0.05


class _WorkerFailed:
    def __init__(self, message: str) -> None:
        self.message = message


class GeneratePane(Vertical):
    """ctrl+g runs the picked seeds, ctrl+r reruns the last seed and persona, Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel run"),
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
        self.show_rates = True  # off in snapshot tests: tok/s and time differ run to run

    def compose(self) -> ComposeResult:
        with Horizontal(id="gen-top"):
            yield Static("", id="gen-plan", markup=False)
            yield Select(self._options(), id="gen-persona", allow_blank=False, compact=True)
        yield Static("Idle. ctrl+g: generate the picked seeds", id="gen-status", markup=False)
        yield ProgressBar(total=1, id="gen-progress", show_eta=False)  # a bar with no total animates
        with Horizontal(id="gen-views"):
            conv = StreamView("The conversation streams here.", id="gen-conv")
            conv.border_title = "Conversation"
            yield conv
            restyled = StreamView("Then its restyled thread streams here.", id="gen-restyled")
            restyled.border_title = "Restyled thread"
            yield restyled

    def on_mount(self) -> None:
        self.refresh_choices()
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
        self.cancel_event = threading.Event()
        self.events.clear()
        progress = self.query_one("#gen-progress", ProgressBar)
        progress.update(total=len(jobs) * 2, progress=0)
        self._status("starting…")
        self._run(pipeline, list(jobs), self.cancel_event)
        return True

    @work(thread=True, exclusive=True, group="generate")
    def _run(self, pipeline, jobs: list[Job], cancel: threading.Event) -> None:  # type: ignore[no-untyped-def]
        try:
            for event in pipeline.run(jobs, restyle=True, cancel=cancel):
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
        """Apply queued events in order; consecutive chunks of one pass become one append."""
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
                if event.phase != pending_phase:
                    flush()
                    pending_phase = event.phase
                pending.append(event.text)
                self.tokens = event.n_tokens
                continue
            flush()
            self._apply(event)
        flush()
        if self.running and self.job is not None:
            self._status_running()

    def _view(self, phase: str) -> StreamView:
        return self.query_one("#gen-conv" if phase == "generate" else "#gen-restyled", StreamView)

    def _apply(self, event: Event | _WorkerFailed) -> None:
        progress = self.query_one("#gen-progress", ProgressBar)
        if isinstance(event, RunStarted):
            self.job = None
        elif isinstance(event, JobStarted):
            self.job, self.phase, self.tokens = event.job, event.phase, 0
            self.job_index = event.index + 1
            self.phase_started = time.perf_counter()
            if event.phase == "generate":
                self.session.last_job = event.job
                self._view("generate").clear("")
                self._view("restyle").clear("waiting for the conversation…")
            else:
                self._view("restyle").clear("")
        elif isinstance(event, JobFinished):
            progress.advance(1)
            self.last_paths.append(str(event.path))
            if event.phase == "generate":
                self.done += 1
            self.post_message(ConversationsChanged())
        elif isinstance(event, JobFailed):
            self.failed += 1
            progress.advance(2 if event.phase == "generate" else 1)
            self.notify(
                event.message, title=f"{event.phase} failed: {event.job.label}", severity="error", timeout=12
            )
        elif isinstance(event, RunFinished):
            self.running = False
            self.job = None
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
        index = min(self.done + self.failed + 1, self.total)
        self._status(
            f"job {index}/{self.total} · {self.phase} · {self.job.label}\n"
            f"{self.tokens} tokens{rate} · Esc cancels"
        )

    def _status(self, text: str) -> None:
        self.query_one("#gen-status", Static).update(text)
