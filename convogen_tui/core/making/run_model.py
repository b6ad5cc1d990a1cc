"""Following a run: one model of its state, folded from the pipeline's events.

``cli/progress.py`` draws it as a bar or log lines, the app's Generate pane as panes; neither counts
on its own. It holds the jobs and passes done (a restyle-only job is one pass, a generation with
its restyle two: ``Job.runs``), tokens, rates, the ETA and the streams in flight with their state.

The ETA counts tokens: each pass still to run is expected to write as many tokens as the finished
passes did on average, or ``max_tokens`` (an upper bound) before any has finished. The rate is all
tokens written since the first one, so prompt reading between passes and several streams at once
are both in it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from convogen_tui.core.keeping.records import Phase
from convogen_tui.core.making.pipeline import (
    Event,
    JobFailed,
    JobFinished,
    JobSkipped,
    JobStarted,
    PromptProgress,
    RunFinished,
    RunStarted,
    TokenChunk,
)
from convogen_tui.core.making.planner import Job

StreamKey = tuple[str, str, int, str]  # seed id, persona label, random seed, pass
JobId = tuple[str, str, int]


def stream_key(job: Job, phase: str) -> StreamKey:
    return (job.seed.tweet_id, job.persona.label, job.random_seed, phase)


def job_id(job: Job) -> JobId:
    return (job.seed.tweet_id, job.persona.label, job.random_seed)


@dataclass
class StreamState:
    """One pass in flight: what it is doing and what it has written so far."""

    job: Job
    phase: Phase
    number: int  # the job's place in the run, from 1
    started: float  # on the model's clock
    prompt_tokens: int = 0
    prompt_read: int | None = None  # prompt tokens read so far, while the backend reports it
    tokens: int = 0
    first: tuple[int, float] | None = None  # token count and backend time of the first chunk
    last_s: float = 0.0  # backend time of the latest chunk
    chunks: list[str] = field(default_factory=list)

    @property
    def key(self) -> StreamKey:
        return stream_key(self.job, self.phase)

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


class RunModel:
    """A run's state. Feed it every event in order (:meth:`handle`); read it to draw."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.reset()

    def reset(self, started: RunStarted | None = None) -> None:
        """A new run (``started`` None: none yet)."""
        self.jobs = started.total if started else 0
        self.passes = (started.passes or started.total) if started else 0  # still expected
        self.max_tokens = max(1, started.max_tokens) if started else 1
        self.parallel = started.parallel if started else 1
        self.model = started.model if started else ""
        self.offload = started.offload if started else ""
        self.restyle = started.restyle if started else True
        self.started = self.clock()
        self.first_token: float | None = None
        self.passes_done = 0
        self.jobs_done = 0  # jobs whose every pass is over (written, skipped or failed)
        self.finished_tokens = 0
        self.conversations = 0
        self.restyled = 0
        self.failed = 0
        self.skipped = 0
        self.paths: list[Path] = []
        self.streams: dict[StreamKey, StreamState] = {}  # passes in flight, in start order
        self.endpoint_tokens: dict[str, int] = {}
        self.endpoint_passes: dict[str, int] = {}
        self.result: RunFinished | None = None

    # folding ------------------------------------------------------------------------------
    def handle(self, event: Event) -> StreamState | None:
        """Fold one event in; returns the stream it concerns (for an ended one, as it ended)."""
        if isinstance(event, RunStarted):
            self.reset(event)
        elif isinstance(event, JobStarted):
            stream = StreamState(event.job, event.phase, event.index + 1, self.clock(), event.prompt_tokens)
            self.streams[stream.key] = stream
            return stream
        elif isinstance(event, PromptProgress):
            stream = self._stream(event.job, event.phase)
            stream.prompt_read, stream.prompt_tokens = event.done, event.total
            return stream
        elif isinstance(event, TokenChunk):
            return self._chunk(event)
        elif isinstance(event, JobFinished):
            return self._finished(event)
        elif isinstance(event, JobSkipped | JobFailed):
            return self._dropped(event)
        elif isinstance(event, RunFinished):
            self.result = event
            self.streams.clear()
        return None

    def _stream(self, job: Job, phase: Phase) -> StreamState:
        key = stream_key(job, phase)
        if key not in self.streams:  # a backend that reports no start
            self.streams[key] = StreamState(job, phase, 0, self.clock())
        return self.streams[key]

    def _chunk(self, event: TokenChunk) -> StreamState:
        if self.first_token is None:
            self.first_token = self.clock()
        stream = self._stream(event.job, event.phase)
        stream.chunks.append(event.text)
        stream.tokens = event.n_tokens
        stream.last_s = event.elapsed_s
        if stream.first is None:
            stream.first = (event.n_tokens, event.elapsed_s)
        return stream

    def _finished(self, event: JobFinished) -> StreamState | None:
        stream = self.streams.pop(stream_key(event.job, event.phase), None)
        self.passes_done += 1
        self.finished_tokens += event.stats.completion_tokens or (stream.tokens if stream else 0)
        self.paths.append(event.path)
        passes = event.job.runs(self.restyle)
        if event.phase == "generate":
            self.conversations += 1
        elif event.phase == "restyle":
            self.restyled += 1
        if event.phase == passes[-1]:
            self.jobs_done += 1
        endpoint = event.stats.endpoint
        if endpoint:
            self.endpoint_tokens[endpoint] = (
                self.endpoint_tokens.get(endpoint, 0) + event.stats.completion_tokens
            )
            self.endpoint_passes[endpoint] = self.endpoint_passes.get(endpoint, 0) + 1
        return stream

    def _dropped(self, event: JobSkipped | JobFailed) -> StreamState | None:
        """Nothing written: this pass and the job's later ones drop out of the count."""
        stream = self.streams.pop(stream_key(event.job, event.phase), None)
        if isinstance(event, JobSkipped):
            self.skipped += 1
        else:
            self.failed += 1
        passes = event.job.runs(self.restyle)
        at = passes.index(event.phase) if event.phase in passes else len(passes) - 1
        self.passes = max(self.passes - (len(passes) - at), self.passes_done + len(self.streams))
        self.jobs_done += 1
        return stream

    # reading ------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.result is None and self.jobs > 0

    def tokens_done(self) -> int:
        return self.finished_tokens + sum(s.tokens for s in self.streams.values())

    def rate(self) -> float | None:
        """Tokens a second, all streams together, since the first token."""
        done = self.tokens_done()
        if self.first_token is None or done == 0:
            return None
        elapsed = self.clock() - self.first_token
        return done / elapsed if elapsed > 0 else None

    def seconds_left(self) -> float | None:
        """None until the first token; 0 when every pass is done."""
        rate = self.rate()
        if rate is None:
            return None
        per_pass = self.finished_tokens / self.passes_done if self.passes_done else self.max_tokens
        waiting = max(self.passes - self.passes_done - len(self.streams), 0)
        left = waiting * per_pass + sum(max(per_pass - s.tokens, 0) for s in self.streams.values())
        return left / rate

    def eta_text(self) -> str:
        left = self.seconds_left()
        if left is None:
            return "ETA -:--:--"
        secs = round(left)
        return f"ETA {secs // 3600}:{secs // 60 % 60:02d}:{secs % 60:02d}"

    def endpoint_rates(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-6)
        return ", ".join(f"{url} {n / elapsed:.1f}" for url, n in self.endpoint_tokens.items())

    def endpoint_summary(self) -> str | None:
        """Passes, tokens and tok/s per inference server (remote backends only)."""
        if not self.endpoint_tokens:
            return None
        elapsed = max(self.clock() - self.started, 1e-6)
        rows = [
            f"{url}: {self.endpoint_passes[url]} pass(es), {n} tokens, {n / elapsed:.1f} tok/s"
            for url, n in self.endpoint_tokens.items()
        ]
        return "per endpoint: " + "; ".join(rows)
