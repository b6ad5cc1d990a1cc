"""Draw a run (``core.making.run_model.RunModel``) as a progress bar on a terminal, or plain log lines.

The reporters count nothing themselves: each event goes to the run model first, then they draw it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from convogen_tui.core.making import pipeline as run
from convogen_tui.core.making.run_model import RunModel, StreamState

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID

WIDTH = 48  # of the bar's description: the pass and the job


def _started_line(model: RunModel) -> str:
    return f"model: {model.model} ({model.offload}); {model.jobs} job(s) to run"


class PlainReporter:
    """One line per finished pass, with the ETA: readable in `nohup` logs and CI."""

    def __init__(self, out: TextIO | None = None, model: RunModel | None = None) -> None:
        self.out = out or sys.stdout
        self.model = model or RunModel()

    def __enter__(self) -> PlainReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def handle(self, event: run.Event) -> None:
        self.model.handle(event)
        if isinstance(event, run.RunStarted):
            self._print(_started_line(self.model))
        elif isinstance(event, run.JobFinished):
            stats = event.stats
            via = f" via {stats.endpoint}" if stats.endpoint else ""
            self._print(
                f"[{event.job.label}] {event.phase}: {stats.completion_tokens} tokens, "
                f"{stats.tokens_per_second:.1f} tok/s{via}, {stats.finish_reason} -> {event.path}, "
                f"{self.model.eta_text()}"
            )
        elif isinstance(event, run.JobSkipped):
            self._print(f"[{event.job.label}] {event.phase} skipped")
        elif isinstance(event, run.JobFailed):
            self._print(f"[{event.job.label}] {event.phase} failed: {event.message}")
        elif isinstance(event, run.RunFinished) and self.model.endpoint_summary():
            self._print(str(self.model.endpoint_summary()))

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)


class RichReporter:
    """A live bar of passes done, with tok/s and ETA; the pass being written on the line above it."""

    def __init__(self, model: RunModel | None = None, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console or Console()
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
        self.task: TaskID | None = None
        self.model = model or RunModel()

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def handle(self, event: run.Event) -> None:
        stream = self.model.handle(event)
        if isinstance(event, run.RunStarted):
            self.console.print(_started_line(self.model))
            self.task = self.progress.add_task("generating", total=self.model.passes, rate="", eta="")
        if self.task is None:
            return
        if isinstance(event, run.JobStarted | run.PromptProgress) and stream is not None:
            self._describe(stream)
        elif isinstance(event, run.TokenChunk) and stream is not None:
            if len(stream.chunks) == 1:
                self._describe(stream)
            if event.n_tokens % 8 == 1:
                self._rates()
        elif isinstance(event, run.JobFinished):
            self.progress.console.print(f"  {event.phase}: {event.path}")
        elif isinstance(event, run.JobSkipped):
            self.progress.console.print(f"  {event.phase} skipped: {event.job.label}")
        elif isinstance(event, run.JobFailed):
            self.progress.console.print(
                f"  [red]{event.phase} failed[/red] {event.job.label}: {event.message}"
            )
        elif isinstance(event, run.RunFinished) and self.model.endpoint_summary():
            self.progress.console.print(str(self.model.endpoint_summary()))
        if isinstance(event, run.JobFinished | run.JobSkipped | run.JobFailed):
            self._rates()

    def _describe(self, stream: StreamState) -> None:
        """The bar's label: the pass being written (and, while it is read, its prompt)."""
        assert self.task is not None
        reading = f"{stream.state()} · " if not stream.tokens and stream.prompt_read is not None else ""
        self.progress.update(self.task, description=f"{reading}{stream.phase} {stream.job.label}"[:WIDTH])

    def _rates(self) -> None:
        """The bar's count, tok/s (per server when several) and ETA, from the run model."""
        assert self.task is not None
        model = self.model
        rate = model.rate()
        per = f" ({model.endpoint_rates()})" if len(model.endpoint_tokens) > 1 else ""
        speed = f"{rate:.1f} tok/s{per}" if rate is not None else ""
        self.progress.update(
            self.task, total=model.passes, completed=model.passes_done, rate=speed, eta=model.eta_text()
        )


def summary_line(result: run.RunFinished, skipped: int = 0) -> str:
    failed = f" ({result.judge_failed} judge-failed)" if result.judge_failed else ""
    judged = f"judged {result.judged} pair(s){failed}"
    only_judged = result.judged and not (result.conversations or result.restyled)
    parts = [
        judged
        if only_judged
        else f"wrote {result.conversations} conversation(s) and {result.restyled} restyled twin(s)"
    ]
    parts.append(f"in {result.elapsed_s:.1f} s ({result.tokens_per_second:.1f} tok/s)")
    if skipped:
        parts.append(f"skipped {skipped} already done (--again to redo)")
    if result.judged and not only_judged:
        parts.append(judged)
    if result.failed:
        parts.append(f"{result.failed} failed")
    return "; ".join(parts)
