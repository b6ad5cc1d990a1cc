"""Messages between panes and from workers; workers never touch widgets, they post these."""

from __future__ import annotations

from textual.message import Message

from convogen_tui.core.making.backend import Backend
from convogen_tui.core.making.check import CheckReport
from convogen_tui.core.making.pipeline import Job


class SetupSaved(Message):
    """The setup or a persona text changed: panes re-read what they show."""


class TemplatesSaved(Message):
    """A template was saved or reloaded: the experiment is checked again."""


class Checked(Message):
    """The experiment's `convogen check` report, from a worker."""

    def __init__(self, report: CheckReport, announce: bool) -> None:
        super().__init__()
        self.report = report
        self.announce = announce  # say the result (after a save), not only list it


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
    """A run saved files, a review changed some, or another process did: Review lists again."""


class SeedsChanged(Message):
    """The seed file changed on disk: the Seeds pane reads it again (picks are kept by id)."""


class PicksChanged(Message):
    """The picked seeds changed (or were restored): Generate shows the new plan."""
