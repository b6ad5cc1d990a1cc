"""Turn pipeline events into a progress bar on a terminal, or plain lines in a log."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from convogen_tui.core.pipeline import (
    Event,
    JobFailed,
    JobFinished,
    JobStarted,
    RunFinished,
    RunStarted,
    TokenChunk,
)


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

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.endpoints = EndpointTally()

    def __enter__(self) -> PlainReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def handle(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._print(f"model: {event.model} ({event.offload}); {event.total} job(s) to run")
        elif isinstance(event, JobFinished):
            stats = event.stats
            self.endpoints.add(event)
            via = f" via {stats.endpoint}" if stats.endpoint else ""
            self._print(
                f"[{event.job.label}] {event.phase}: {stats.completion_tokens} tokens, "
                f"{stats.tokens_per_second:.1f} tok/s{via}, {stats.finish_reason} -> {event.path}"
            )
        elif isinstance(event, RunFinished) and self.endpoints.summary():
            self._print(str(self.endpoints.summary()))
        elif isinstance(event, JobFailed):
            self._print(f"[{event.job.label}] {event.phase} failed: {event.message}")

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)


class RichReporter:
    """A live bar with count, tok/s and ETA; the current job on the line above it."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.task = None
        self.tokens = 0
        self.started = time.perf_counter()
        self.endpoints = EndpointTally()

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def handle(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.console.print(f"model: {event.model} ({event.offload}); {event.total} job(s) to run")
            self.task = self.progress.add_task("generating", total=event.total, rate="")
        elif self.task is None:
            return
        elif isinstance(event, JobStarted):
            self.progress.update(self.task, description=f"{event.phase} {event.job.label}"[:48])
        elif isinstance(event, TokenChunk):
            self.tokens += 1
            if self.tokens % 8 == 0:
                rate = self.tokens / max(time.perf_counter() - self.started, 1e-6)
                per = f" ({self.endpoints.rates()})" if len(self.endpoints.tokens) > 1 else ""
                self.progress.update(self.task, rate=f"{rate:.1f} tok/s{per}")
        elif isinstance(event, RunFinished):
            if self.endpoints.summary():
                self.progress.console.print(str(self.endpoints.summary()))
        elif isinstance(event, JobFinished):
            self.endpoints.add(event)
            if event.phase == "generate":
                self.progress.advance(self.task)
            self.progress.console.print(f"  {event.phase}: {event.path}")
        elif isinstance(event, JobFailed):
            self.progress.console.print(
                f"  [red]{event.phase} failed[/red] {event.job.label}: {event.message}"
            )


def summary_line(result: RunFinished, skipped: int = 0) -> str:
    parts = [f"wrote {result.conversations} conversation(s) and {result.restyled} restyled twin(s)"]
    parts.append(f"in {result.elapsed_s:.1f} s ({result.tokens_per_second:.1f} tok/s)")
    if skipped:
        parts.append(f"skipped {skipped} already done (--again to redo)")
    if result.failed:
        parts.append(f"{result.failed} failed")
    return "; ".join(parts)
