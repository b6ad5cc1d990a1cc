"""Turn pipeline events into a progress bar on a terminal, or plain lines in a log."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from convogen_tui.core.making.pipeline import (
    Event,
    Job,
    JobFailed,
    JobFinished,
    JobSkipped,
    JobStarted,
    PromptProgress,
    RunFinished,
    RunStarted,
    TokenChunk,
)


class EtaEstimate:
    """Time left from token throughput, known as soon as tokens flow, not only when a job ends.

    Work is counted in tokens: each pass still to run is expected to write as many tokens as the
    finished passes did on average, or the ``max_tokens`` budget (an upper bound) before any has
    finished. The rate is all tokens written since the first one, so prompt reading between passes
    and several streams at once are both in it.
    """

    def __init__(self, passes: int, max_tokens: int, clock: Callable[[], float] = time.perf_counter) -> None:
        self.passes = passes
        self.max_tokens = max(1, max_tokens)
        self.clock = clock
        self.first_token: float | None = None
        self.finished_passes = 0
        self.finished_tokens = 0
        self.live: dict[tuple[str, str, int, str], int] = {}  # tokens of each pass in flight

    def handle(self, event: Event) -> None:
        if isinstance(event, TokenChunk):
            if self.first_token is None:
                self.first_token = self.clock()
            self.live[_pass_key(event.job, event.phase)] = event.n_tokens
        elif isinstance(event, JobFinished | JobFailed | JobSkipped):
            key = _pass_key(event.job, event.phase)
            tokens = self.live.pop(key, 0)
            if isinstance(event, JobFinished):
                self.finished_passes += 1
                self.finished_tokens += event.stats.completion_tokens or tokens
            else:
                # nothing written: this pass (and the restyle a generation would have had) drop out
                self.passes -= 2 if event.phase == "generate" and not event.job.conv_id else 1
                self.passes = max(self.passes, self.finished_passes)

    def tokens_done(self) -> int:
        return self.finished_tokens + sum(self.live.values())

    def seconds_left(self) -> float | None:
        """None until the first token; 0 when every pass is done."""
        done = self.tokens_done()
        if self.first_token is None or done == 0:
            return None
        elapsed = self.clock() - self.first_token
        if elapsed <= 0:
            return None
        per_pass = self.finished_tokens / self.finished_passes if self.finished_passes else self.max_tokens
        waiting = max(self.passes - self.finished_passes - len(self.live), 0)
        left = waiting * per_pass + sum(max(per_pass - t, 0) for t in self.live.values())
        return left / (done / elapsed)

    def text(self) -> str:
        left = self.seconds_left()
        if left is None:
            return "ETA -:--:--"
        secs = round(left)
        return f"ETA {secs // 3600}:{secs // 60 % 60:02d}:{secs % 60:02d}"


def _pass_key(job: Job, phase: str) -> tuple[str, str, int, str]:
    return (job.seed.tweet_id, job.persona.label, job.random_seed, phase)


class EndpointTally:
    """Tokens finished per inference server, for per-endpoint throughput (remote backends only)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.tokens: dict[str, int] = {}
        self.passes: dict[str, int] = {}

    def add(self, event: JobFinished) -> None:
        endpoint = event.stats.endpoint
        if endpoint:
            self.tokens[endpoint] = self.tokens.get(endpoint, 0) + event.stats.completion_tokens
            self.passes[endpoint] = self.passes.get(endpoint, 0) + 1

    def rates(self) -> str:
        elapsed = max(time.perf_counter() - self.started, 1e-6)
        return ", ".join(f"{url} {n / elapsed:.1f}" for url, n in self.tokens.items())

    def summary(self) -> str | None:
        if not self.tokens:
            return None
        elapsed = max(time.perf_counter() - self.started, 1e-6)
        rows = [
            f"{url}: {self.passes[url]} pass(es), {n} tokens, {n / elapsed:.1f} tok/s"
            for url, n in self.tokens.items()
        ]
        return "per endpoint: " + "; ".join(rows)


class PlainReporter:
    """One line per finished pass: readable in `nohup` logs and CI."""

    def __init__(self, out: TextIO | None = None, eta: EtaEstimate | None = None) -> None:
        self.out = out or sys.stdout
        self.endpoints = EndpointTally()
        self.eta = eta

    def __enter__(self) -> PlainReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def handle(self, event: Event) -> None:
        if self.eta is not None:
            self.eta.handle(event)
        if isinstance(event, RunStarted):
            self._print(f"model: {event.model} ({event.offload}); {event.total} job(s) to run")
        elif isinstance(event, JobFinished):
            stats = event.stats
            self.endpoints.add(event)
            via = f" via {stats.endpoint}" if stats.endpoint else ""
            eta = f", {self.eta.text()}" if self.eta is not None else ""
            self._print(
                f"[{event.job.label}] {event.phase}: {stats.completion_tokens} tokens, "
                f"{stats.tokens_per_second:.1f} tok/s{via}, {stats.finish_reason} -> {event.path}{eta}"
            )
        elif isinstance(event, JobSkipped):
            self._print(f"[{event.job.label}] {event.phase} skipped")
        elif isinstance(event, RunFinished) and self.endpoints.summary():
            self._print(str(self.endpoints.summary()))
        elif isinstance(event, JobFailed):
            self._print(f"[{event.job.label}] {event.phase} failed: {event.message}")

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)


class RichReporter:
    """A live bar with count, tok/s and ETA; the current job on the line above it."""

    def __init__(self, eta: EtaEstimate | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            console=self.console,
            transient=False,
        )
        self.task = None
        self.tokens: dict[tuple[str, str, int, str], int] = {}  # per pass, so several streams add up
        self.written = 0
        self.started = time.perf_counter()
        self.endpoints = EndpointTally()
        self.eta = eta or EtaEstimate(0, 1)
        self.label = ""

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def handle(self, event: Event) -> None:
        self.eta.handle(event)
        if isinstance(event, RunStarted):
            self.console.print(f"model: {event.model} ({event.offload}); {event.total} job(s) to run")
            self.task = self.progress.add_task("generating", total=event.total, rate="", eta=self.eta.text())
        elif self.task is None:
            return
        elif isinstance(event, JobStarted):
            self.label = f"{event.phase} {event.job.label}"
            self.progress.update(self.task, description=self.label[:48])
        elif isinstance(event, PromptProgress):
            where = f"reading prompt {event.done}/{event.total}"
            self.progress.update(self.task, description=f"{where} · {event.phase} {event.job.label}"[:48])
        elif isinstance(event, TokenChunk):
            key = _pass_key(event.job, event.phase)
            if key not in self.tokens:
                self.progress.update(self.task, description=f"{event.phase} {event.job.label}"[:48])
            self.written += event.n_tokens - self.tokens.get(key, 0)
            self.tokens[key] = event.n_tokens
            if event.n_tokens % 8 == 1:
                rate = self.written / max(time.perf_counter() - self.started, 1e-6)
                per = f" ({self.endpoints.rates()})" if len(self.endpoints.tokens) > 1 else ""
                self.progress.update(self.task, rate=f"{rate:.1f} tok/s{per}", eta=self.eta.text())
        elif isinstance(event, RunFinished):
            if self.endpoints.summary():
                self.progress.console.print(str(self.endpoints.summary()))
        elif isinstance(event, JobFinished):
            self.tokens.pop(_pass_key(event.job, event.phase), None)
            self.endpoints.add(event)
            if event.phase == "generate":
                self.progress.advance(self.task)
            self.progress.update(self.task, eta=self.eta.text())
            self.progress.console.print(f"  {event.phase}: {event.path}")
        elif isinstance(event, JobSkipped):
            self.tokens.pop(_pass_key(event.job, event.phase), None)
            self.progress.console.print(f"  {event.phase} skipped: {event.job.label}")
        elif isinstance(event, JobFailed):
            self.progress.console.print(
                f"  [red]{event.phase} failed[/red] {event.job.label}: {event.message}"
            )


def summary_line(result: RunFinished, skipped: int = 0) -> str:
    parts = [f"wrote {result.conversations} conversation(s) and {result.restyled} restyled twin(s)"]
    parts.append(f"in {result.elapsed_s:.1f} s ({result.tokens_per_second:.1f} tok/s)")
    if skipped:
        parts.append(f"skipped {skipped} already done (--again to redo)")
    if result.judged:
        failed = f" ({result.judge_failed} judge-failed)" if result.judge_failed else ""
        parts.append(f"judged {result.judged} pair(s){failed}")
    if result.failed:
        parts.append(f"{result.failed} failed")
    return "; ".join(parts)
