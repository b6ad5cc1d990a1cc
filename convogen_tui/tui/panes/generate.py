"""Generate pane: run picked seeds x personas and watch both passes stream in.

A thread worker iterates ``Pipeline.run`` and only appends events to a deque; a 50 ms timer on the
UI thread drains it into the run model (``core.making.run_model.RunModel``, the same one the CLI's
progress draws) and joins the chunks of the shown pass into one append. So the screen is redrawn
at most 20 times a second whatever the token rate, and no widget is touched from the worker. The
pane counts nothing itself: it draws the model.

A backend with several slots (llama.cpp batching, OpenAI-compatible servers) runs that many streams
at once. One is shown live: the first, or the one picked with [ and ]; it stays until it ends, then
its own next pass (the restyle of the conversation just shown) takes the view, else the oldest
still running. The others are listed above the views with their state.

Run control: ``s`` skips the live pass (the others go on; ``core.pipeline.Skips``), Esc cancels the
run, ``t`` restyles the conversations left without a twin. Each stream says what it is doing before
its first token: waiting for the model to load, reading its prompt ("reading prompt 812/1249"),
then tokens, tok/s and the run's ETA.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
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
    RunFinished,
    RunStarted,
    Skips,
    TokenChunk,
)
from convogen_tui.core.making.planner import PlanRequest
from convogen_tui.core.making.run_model import JobId, RunModel, StreamKey, StreamState, job_id, stream_key
from convogen_tui.tui.cells import display_safe
from convogen_tui.tui.messages import ConversationsChanged
from convogen_tui.tui.session import ALL, RANDOM, Session
from convogen_tui.tui.typed import convogen_app
from convogen_tui.tui.widgets.stream_view import StreamView
from convogen_tui.tui.workers import ReportsWorkerErrors, WorkerFailed, background

FLUSH_S = 0.05
BUSY_HINT = "wait for it to finish, or stop that run first"
MAX_LISTED = 4  # running jobs listed above the views; more are counted
RESTYLE_HINT = "t restyles them (or convogen restyle)"


class _WorkerFailed:
    """The run's worker raised: queued after its events, so they are shown first."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint  # what to do, when the error says (a busy experiment, a full disk)


@dataclass(frozen=True)
class _Twinless:
    """After a run: how many of the experiment's conversations wait for a twin (read by the worker)."""

    count: int


class GeneratePane(ReportsWorkerErrors, Vertical):
    """ctrl+g runs the picked seeds, ctrl+r reruns the last seed and persona, s skips, Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "skip", "Skip", tooltip="skip the pass shown (no file); the others go on"),
        Binding("escape", "cancel", "Cancel all", tooltip="cancel the run (unfinished passes write no file)"),
        Binding("t", "restyle", "Twins", tooltip="restyle the conversations that have no twin yet"),
        Binding("J", "judge", "Judge", show=False, tooltip="judge the restyled pairs not judged yet"),
        Binding("left_square_bracket", "switch(-1)", "Prev", show=False, tooltip="show the previous stream"),
        Binding("right_square_bracket", "switch(1)", "Next", show=False, tooltip="show the next stream"),
    ]

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self.model = RunModel()  # the run being drawn: every count, rate and stream comes from it
        self.events: deque[Event | _WorkerFailed | _Twinless] = deque()
        self.running = False
        self.waiting: list[Job] | None = None  # jobs asked for while the model loads
        self.cancel_event: threading.Event | None = None
        self.skips: Skips | None = None
        self.live: StreamKey | None = None  # the pass in the views, while it runs
        self.follow: JobId | None = None  # the live pass ended: its job's next pass takes the view
        self.conv_shows: JobId | None = None  # whose conversation the left view holds
        self.twinless = 0  # after a run: the experiment's conversations without a twin
        self.views_behind = False  # the tab was hidden while passes streamed: redraw when shown
        self.backlog: dict[str, list[str]] = {}  # view id -> text streamed while hidden, not drawn yet
        self.redraws = 0  # drains that drew something (tests: none while the tab is hidden)

    @property
    def streams(self) -> dict[StreamKey, StreamState]:
        return self.model.streams

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

    def action_restyle(self) -> None:
        """Restyle every conversation of the experiment that has no twin yet (skipped, cancelled)."""
        try:
            jobs = self.session.plan(PlanRequest(kind="restyle", base_seed=self.session.seed)).jobs
        except ConvogenError as exc:
            self.notify(str(exc), severity="error")
            return
        if not jobs:
            self.notify("every conversation has a restyled twin")
            return
        self.start(jobs)

    def action_judge(self) -> None:
        """Judge every restyled pair not judged yet (the setup's judge block and judge.txt)."""
        try:
            plan = self.session.plan(PlanRequest(kind="judge", base_seed=self.session.seed))
        except ConvogenError as exc:
            self.notify(str(exc), severity="error")
            return
        if not plan.jobs:
            stale = (
                f"; {plan.stale} judged under older criteria (convogen judge --again)" if plan.stale else ""
            )
            self.notify(f"every restyled pair is judged{stale}")
            return
        self.start(plan.jobs)

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
        self.model.reset()
        self.live, self.follow, self.conv_shows, self.twinless = None, None, None, 0
        self.cancel_event = threading.Event()
        self.skips = Skips()
        self.events.clear()
        progress = self.query_one("#gen-progress", ProgressBar)
        progress.update(total=sum(len(job.passes) for job in jobs), progress=0)
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
                if isinstance(event, RunFinished):
                    self.events.append(_Twinless(len(pipeline.store.without_twin())))
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
        """Stop the live pass (no file); the others in the run go on. Says what is given up."""
        stream = self.streams.get(self.live) if self.live is not None else None
        if not self.running or stream is None or self.skips is None:
            self.notify("nothing running to skip")
            return
        self.skips.skip(stream.number - 1)
        if stream.phase == "restyle":
            what = "the conversation stays, without a twin; the next run restyles it (t)"
        else:
            what = "no file, and no restyle for it; the others go on"
        self.notify(f"skipping job {stream.number} ({stream.phase}): {what}")

    # draining -----------------------------------------------------------------------------
    def drain(self) -> None:
        """Fold queued events into the model in order; chunks of the live pass become one append.

        While the tab is hidden nothing is drawn (16 streams cost a core's slice of redraws): the
        live pass's text waits in ``backlog`` and goes into the views in one piece when shown."""
        hidden = self._hidden()
        if not hidden and self.views_behind:
            self.views_behind = False
            for view_id, texts in self.backlog.items():
                self.query_one(f"#{view_id}", StreamView).append("".join(texts))
            self.backlog.clear()
            self._show_jobs()
        pending: list[str] = []
        pending_phase = ""

        def flush() -> None:
            if pending:
                view = self._view(pending_phase)
                if hidden:
                    self.backlog.setdefault(str(view.id), []).append("".join(pending))
                else:
                    view.append("".join(pending))
                pending.clear()

        changed = bool(self.events)
        while self.events:
            event = self.events.popleft()
            if isinstance(event, TokenChunk):
                self.model.handle(event)
                if stream_key(event.job, event.phase) == self.live:
                    if event.phase != pending_phase:
                        flush()
                        pending_phase = event.phase
                    pending.append(event.text)
                continue
            flush()
            self._apply(event)
        flush()
        if hidden:
            self.views_behind = self.views_behind or changed
            return
        if changed:
            self.redraws += 1
            self._show_jobs()
        if self.running:
            self._status_running()

    def _hidden(self) -> bool:
        """Whether a tab (or anything above) hides this pane now."""
        return any(not node.display for node in self.ancestors_with_self if isinstance(node, Widget))

    def _view(self, phase: str) -> StreamView:
        return self.query_one("#gen-conv" if phase == "generate" else "#gen-restyled", StreamView)

    def _show_live(self, key: StreamKey | None) -> None:
        """Put a pass in the views: its text so far, and for a restyle the conversation it restyles."""
        self.live = key
        stream = self.streams.get(key) if key is not None else None
        if stream is None:
            return
        self.follow = None
        ident = job_id(stream.job)
        # a view set from a stream's whole text drops what waited for it (a hidden tab's backlog)
        if stream.phase == "generate":
            self._view("generate").set_text(stream.text, "")
            self.backlog.pop("gen-conv", None)
            self.conv_shows = ident
            self._view("restyle").clear("waiting for the conversation…")
        else:
            if self.conv_shows != ident:
                self._view("generate").set_text(stream.job.conv or "", "")
                self.backlog.pop("gen-conv", None)
                self.conv_shows = ident
            self._view("restyle").set_text(stream.text, "")
        self.backlog.pop("gen-restyled", None)
        self._view("restyle").border_title = "Judgment" if stream.phase == "judge" else "Restyled thread"

    def action_switch(self, step: int) -> None:
        """Show the previous or next running pass; it stays shown until it ends."""
        keys = list(self.streams)
        if len(keys) < 2:
            return
        at = keys.index(self.live) if self.live in keys else -1
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
            line = f"{mark} {stream.number}/{self.model.jobs} {stream.phase:<8} {state} · {stream.job.label}"
            lines.append(display_safe(line))
        more = len(self.streams) - MAX_LISTED
        if more > 0:
            lines.append(f"  … {more} more running")
        box.update("\n".join(lines))
        box.display = True

    def _ended(self, event: JobFinished | JobSkipped | JobFailed) -> None:
        """A pass ended: if it was live, its job's next pass takes the view, else the oldest running."""
        self.model.handle(event)
        ident = job_id(event.job)
        if stream_key(event.job, event.phase) == self.live:
            self.live = None
            if isinstance(event, JobFinished) and event.phase != event.job.runs(self.model.restyle)[-1]:
                self.follow = ident  # its next pass is queued first: the view waits for it
                return
        elif self.follow != ident or isinstance(event, JobFinished):
            return
        self.follow = None
        if self.streams:
            self._show_live(next(iter(self.streams)))

    def _apply(self, event: Event | _WorkerFailed | _Twinless) -> None:
        if isinstance(event, JobStarted):
            self.model.handle(event)
            if event.phase == "generate":
                self.session.last_job = event.job
            if self.live not in self.streams and self.follow in (None, job_id(event.job)):
                self._show_live(stream_key(event.job, event.phase))
        elif isinstance(event, JobFinished | JobSkipped | JobFailed):
            self._pass_ended(event)
        elif isinstance(event, RunFinished | _WorkerFailed):
            self._run_over(event)
        elif isinstance(event, _Twinless):
            self.twinless = event.count
        else:
            self.model.handle(event)
            if isinstance(event, RunStarted):
                self._status(f"job 1/{event.total} starting", "reading the first prompt… · Esc cancels")
        self._progress()

    def _pass_ended(self, event: JobFinished | JobSkipped | JobFailed) -> None:
        self._ended(event)
        if isinstance(event, JobFinished):
            self.post_message(ConversationsChanged())
        elif isinstance(event, JobSkipped):
            self.notify(f"skipped {event.phase}: {event.job.label} (no file written)")
        else:
            self.notify(
                event.message,
                title=f"{event.phase} failed: {event.job.label}",
                severity="error",
                timeout=12,
            )

    def _progress(self) -> None:
        """The bar: passes done of the passes the run still expects (skips and failures drop out)."""
        if self.model.jobs:
            bar = self.query_one("#gen-progress", ProgressBar)
            bar.update(total=self.model.passes, progress=self.model.passes_done)

    def _run_over(self, event: RunFinished | _WorkerFailed) -> None:
        self.running = False
        self.live, self.follow = None, None
        if isinstance(event, RunFinished):
            self.model.handle(event)
        else:
            self.model.streams.clear()
        self._show_jobs()
        if isinstance(event, _WorkerFailed):
            what_to_do = event.hint or "check the model (llm in the setup, or F7) and retry"
            self._status("the run stopped on an error", what_to_do)
            return
        what = "cancelled: no partial file was written" if event.cancelled else "done"
        skipped = f", {event.skipped} skipped" if event.skipped else ""
        rate = f" · {event.tokens_per_second:.1f} tok/s" if event.completion_tokens else ""
        second = f"ctrl+g generate · ctrl+r rerun{rate}"
        if self.twinless and (event.cancelled or event.skipped or event.failed):
            second = f"{self.twinless} conversation(s) wait for a twin: {RESTYLE_HINT}"
        self._status(
            f"{what} · {event.conversations} conversation(s), {event.restyled} restyled, "
            f"{event.failed} failed{skipped}",
            second,
        )
        if event.cancelled:
            self.notify("run cancelled; the unfinished pass left no file")

    def _status_running(self) -> None:
        """Two lines that fit 80 columns: where the run is, then what the live pass is doing."""
        model = self.model
        stream = self.streams.get(self.live) if self.live is not None else None
        if stream is None:
            if model.passes_done or model.jobs_done:
                done = f"{model.jobs_done}/{model.jobs} job(s) done"
                self._status(f"{done} · the next pass starts", f"{model.eta_text()} · Esc cancel all")
            return
        where = f"job {stream.number}/{model.jobs}"
        if len(self.streams) > 1:
            where = f"{len(self.streams)} running ([ ] switch) · {where} shown"
        if not stream.tokens:
            state = stream.state()
        else:
            rate = stream.rate()
            speed = f"{rate:.1f} tok/s" if rate is not None else "-- tok/s"
            state = f"{speed} · {stream.tokens} tokens · {stream.last_s:.0f} s"
        self._status(
            f"{where} · {stream.phase} · {stream.job.label}",
            f"{state} · {model.eta_text()} · s skip · Esc cancel all",
        )

    def _status(self, first: str, second: str = "") -> None:
        self.query_one("#gen-status", Static).update(display_safe(f"{first}\n{second}".rstrip("\n")))
