"""Messages between panes and from workers; workers never touch widgets, they post these."""

from __future__ import annotations

from textual.message import Message

from convogen_tui.core.backend import Backend
from convogen_tui.core.pipeline import Job


class SetupSaved(Message):
    """The setup or a persona text changed: panes re-read what they show."""


class ModelReady(Message):
    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend


class ModelFailed(Message):
    def __init__(self, message: str, hint: str | None) -> None:
        super().__init__()
        self.message = message
        self.hint = hint


class RunJobs(Message):
    """Ask the Generate pane to run these jobs (from Review's regenerate, or a rerun)."""

    def __init__(self, jobs: list[Job]) -> None:
        super().__init__()
        self.jobs = jobs


class ConversationsChanged(Message):
    """A run saved files or a review changed some: the Review pane lists again when shown."""
