"""Thread workers and their failures: one decorator to start them, one place that reports an error.

Every blocking job (listing, reading, loading, hydrating, generating) runs in a thread worker made
with :func:`background`: its failures do not end the app (``exit_on_error=False``). Textual posts
``Worker.StateChanged`` to the widget that started the worker and does not bubble it, so each
widget that starts workers mixes in :class:`ReportsWorkerErrors`, whose one handler hands an
``ERROR`` to the app's ``report_worker_error``: the user gets one notification (what, and what to
do), and the widget gets a :class:`WorkerFailed` message to put its own state right.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from textual import work
from textual.message import Message
from textual.worker import Worker, WorkerState

from convogen_tui.core.errors import ConvogenError
from convogen_tui.tui.typed import convogen_app


def background(group: str, description: str, exclusive: bool = True) -> Callable[[Any], Any]:
    """A thread worker that reports its failure instead of ending the app.

    ``description`` names the job in the error notification ("listing conversations").
    """
    return work(  # type: ignore[no-any-return]
        thread=True, exclusive=exclusive, group=group, description=description, exit_on_error=False
    )


def describe_error(error: BaseException | None) -> tuple[str, str | None]:
    """What went wrong in one line, and what to do when we know it."""
    if error is None:
        return "unknown error", None
    if isinstance(error, ConvogenError):
        problem = error.problems[0] if error.problems else None
        if problem is not None:
            return str(replace(problem, hint=None)), problem.hint
        return str(error), None
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror or error}", "check the file exists and can be read"
    return f"{type(error).__name__}: {error}", None


class WorkerFailed(Message):
    """One of this widget's workers raised; the user has been told. Handle it to reset state."""

    def __init__(self, worker: Worker[Any], message: str, hint: str | None) -> None:
        super().__init__()
        self.worker = worker
        self.message = message
        self.hint = hint

    @property
    def group(self) -> str:
        return self.worker.group


class ReportsWorkerErrors:
    """Mixin for widgets and screens that start workers: failures go to the app's one reporter."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            convogen_app(self).report_worker_error(event.worker, self)  # type: ignore[arg-type]
