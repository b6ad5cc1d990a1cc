"""One experiment: Setup, Templates, Seeds, Generate and Review as tabs, switched with F2-F6 (or 2-6).

The screen keeps the panes in step with the disk: every second it asks the editors to follow their
files and looks at the conversation folders and the seed file (a ``stat`` each), so a `convogen
mark` from another shell, a restyle that finished or an edited seed file shows within a second or
two. It also runs ``convogen check``'s own check in a worker after every save.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Header, TabbedContent, TabPane

from convogen_tui.core.keeping.tracked import Stamp, stamp
from convogen_tui.core.making.check import check_experiment
from convogen_tui.tui.editing import EditedFile, KeepsEdits
from convogen_tui.tui.keys import KeyFooter
from convogen_tui.tui.messages import (
    Checked,
    ConversationsChanged,
    PicksChanged,
    RunJobs,
    SeedsChanged,
    SetupSaved,
    TemplatesSaved,
)
from convogen_tui.tui.panes.generate import GeneratePane
from convogen_tui.tui.panes.review import ReviewPane
from convogen_tui.tui.panes.seeds import SeedsPane
from convogen_tui.tui.panes.setup import SetupPane
from convogen_tui.tui.panes.templates import TemplatesPane
from convogen_tui.tui.session import Session
from convogen_tui.tui.typed import convogen_app
from convogen_tui.tui.workers import ReportsWorkerErrors, background

PANES = [
    ("setup", "F2 Setup", "f2"),
    ("templates", "F3 Templates", "f3"),
    ("seeds", "F4 Seeds", "f4"),
    ("generate", "F5 Generate", "f5"),
    ("review", "F6 Review", "f6"),
]
POLL_S = 1.0  # how often the screen looks at the disk


class ExperimentScreen(ReportsWorkerErrors, KeepsEdits, Screen[None]):
    """The open experiment. Run keys work from every tab, so an edit is one key from a rerun."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *[
            Binding(key, f"show_pane('{pane}')", label.split(" ", 1)[1], show=False, priority=True)
            for pane, label, key in PANES
        ],
        # F-keys often do not reach the app over SSH or tmux: the tab's digit works too (outside
        # text fields, where a digit is typed instead)
        *[
            Binding(key[1:], f"show_pane('{pane}')", label.split(" ", 1)[1], show=False)
            for pane, label, key in PANES
        ],
        Binding("ctrl+g", "generate", "Generate", priority=True, tooltip="generate the picked seeds"),
        Binding("ctrl+r", "rerun", "Rerun", priority=True, tooltip="rerun the last seed and persona"),
        Binding("ctrl+l", "problems", "Problems", priority=True, tooltip="the first problem of the check"),
        Binding("ctrl+o", "app.experiments", "Experiments", show=False, tooltip="back to the experiments"),
    ]

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self._dirs: tuple[Stamp | None, ...] = self._dir_stamps()
        self._seeds_stamp: Stamp | None = self._seed_file_stamp()
        self._told_problems = False  # problems are announced once on opening, then after saves
        self._focus_serial = 0  # the latest request to focus a pane wins

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(initial="templates", id="tabs"):
            with TabPane(PANES[0][1], id="setup"):
                yield SetupPane(self.session, id="setup-pane")
            with TabPane(PANES[1][1], id="templates"):
                yield TemplatesPane(self.session, id="templates-pane")
            with TabPane(PANES[2][1], id="seeds"):
                yield SeedsPane(self.session, id="seeds-pane")
            with TabPane(PANES[3][1], id="generate"):
                yield GeneratePane(self.session, id="generate-pane")
            with TabPane(PANES[4][1], id="review"):
                yield ReviewPane(self.session, id="review-pane")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.title = f"ConvoGen · {self.session.experiment.name}"
        self.watch(convogen_app(self), "model_status", self.model_changed)
        self._focus_pane("templates")
        self.set_interval(POLL_S, self.poll_disk)
        self.run_check(announce=False)

    @property
    def generate(self) -> GeneratePane:
        return self.query_one(GeneratePane)

    @property
    def templates(self) -> TemplatesPane:
        return self.query_one(TemplatesPane)

    @property
    def review(self) -> ReviewPane:
        return self.query_one(ReviewPane)

    @property
    def setup_pane(self) -> SetupPane:
        return self.query_one(SetupPane)

    @property
    def seeds(self) -> SeedsPane:
        return self.query_one(SeedsPane)

    def active_pane(self) -> str:
        return str(self.query_one(TabbedContent).active)

    def show_pane(self, pane: str, target: str | None = None) -> None:
        """Switch tab and focus its main widget (or ``target``, a selector in that tab)."""
        self.query_one(TabbedContent).active = pane
        self._focus_pane(pane, target)

    def action_show_pane(self, pane: str) -> None:
        self.show_pane(pane)

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = str(event.pane.id)
        if pane == "generate":
            self.generate.show_plan()
        if pane == "review" and self.review.stale:
            self.review.relist()

    def _focus_pane(self, pane: str, target: str | None = None) -> None:
        """Put the focus on the pane's main widget, and make sure it stays there once shown.

        The tab switch reaches the screen a few messages later than the key; a widget focused
        while still hidden can lose the focus again when the tab appears. So this looks again
        every 50 ms (for up to 3 s) until the widget is laid out and focused; a newer request wins.
        """
        targets = {
            "setup": "#setup-editor",
            "templates": f"#tpl-{self.templates.kind}",
            "seeds": "#seed-table",
            "generate": "#gen-conv",
            "review": "#rev-table",
        }
        self._focus_serial += 1
        serial = self._focus_serial

        def focus(tries: int) -> None:
            if serial != self._focus_serial or not self.is_current:
                return
            widget = self.query_one(target or targets[pane])
            if self.app.focused is widget and widget.region.area:
                return  # shown and focused: done
            if self.app.focused is widget or widget.focusable:
                widget.focus()
            if tries > 0:
                self.set_timer(0.05, lambda: focus(tries - 1))

        self.call_after_refresh(focus, 60)

    def current_file(self) -> Path | None:
        """The file the user is looking at, for opening in $EDITOR."""
        pane = self.active_pane()
        if pane == "setup":
            return self.session.experiment.setup_file
        if pane == "templates":
            return self.templates.current_file()
        if pane == "review":
            row = self.review.current()
            return self.session.store.conversation_path(row.id) if row else None
        return None

    def reload_after_edit(self, path: Path) -> None:
        """After $EDITOR: re-read what changed on disk into the panes."""
        if path == self.session.experiment.setup_file:
            self.setup_pane.file.take_disk()
            self.setup_pane.setup_changed()
        elif path.name.endswith(".txt"):
            self.templates.reload_from_disk()
        else:
            self.review.relist()

    # unsaved edits ------------------------------------------------------------------------
    def edited_files(self) -> list[EditedFile]:
        return [self.setup_pane.file, *self.templates.edited_files()]

    def after_save(self, changed: list[EditedFile]) -> None:
        if self.setup_pane.file in changed:
            self.setup_pane.setup_changed()
        if any(f in changed for f in self.templates.edited_files()):
            self.templates.schedule_preview(0)
            self.run_check(announce=True)

    # the disk -----------------------------------------------------------------------------
    def _dir_stamps(self) -> tuple[Stamp | None, ...]:
        experiment = self.session.experiment
        folders = (
            experiment.conversations_dir,
            experiment.restyled_dir,
            experiment.trash_dir,
            experiment.judgments_dir,
        )
        return tuple(stamp(folder) for folder in folders)

    def _seed_file_stamp(self) -> Stamp | None:
        path = self.session.experiment.seeds_path()
        return stamp(path) if path is not None else None

    def poll_disk(self) -> None:
        """Follow the files: editors, conversations (new, deleted, marked, restyled), seed file.

        Every write in this project is a rename into the folder, so a folder's own stamp changes
        with each new, deleted or rewritten conversation; no file needs reading to notice.
        """
        with contextlib.suppress(NoMatches):  # the screen is being taken down
            self.setup_pane.poll_disk()
            self.templates.poll_disk()
            dirs = self._dir_stamps()
            if dirs != self._dirs:
                self._dirs = dirs
                self.post_message(ConversationsChanged())
            seeds = self._seed_file_stamp()
            if seeds != self._seeds_stamp:
                self._seeds_stamp = seeds
                self.post_message(SeedsChanged())

    # checking -----------------------------------------------------------------------------
    def run_check(self, announce: bool = True) -> None:
        """`convogen check` of this experiment, in a worker; the Setup pane lists its problems."""
        self._check(self.session, announce)

    @background("check", "checking the experiment")
    def _check(self, session: Session, announce: bool) -> None:
        from convogen_tui.llm.loader import resolve_experiment_model

        report = check_experiment(
            session.experiment, model=session.model, resolve_model=resolve_experiment_model
        )
        self.post_message(Checked(report, announce))

    @on(Checked)
    def _checked(self, message: Checked) -> None:
        if message.report.experiment is not self.session.experiment:
            return  # an older setup's report: a newer check is on its way
        self.session.report = message.report
        self.setup_pane.show_report(message.report)
        errors = len(message.report.errors)
        if errors and (message.announce or not self._told_problems):
            self._told_problems = True
            self.notify(
                f"{errors} problem(s) in {self.session.experiment.name}: ctrl+l lists them",
                severity="warning",
                timeout=8,
            )
        elif message.announce:
            self.notify("the experiment is valid (as convogen check)")

    def action_problems(self) -> None:
        """ctrl+l: to the Setup tab's problem list, on the first problem."""
        self.show_pane("setup", "#setup-problems")
        self.setup_pane.focus_first_problem()

    # runs ---------------------------------------------------------------------------------
    def _save_templates_first(self, then: Callable[[], None]) -> None:
        if self.templates.dirty():
            self.templates.save(then)
        else:
            then()

    def action_generate(self) -> None:
        def go() -> None:
            self.show_pane("generate")
            self.generate.action_generate()

        self._save_templates_first(go)

    def action_rerun(self) -> None:
        def go() -> None:
            self.show_pane("generate")
            self.generate.action_rerun()

        self._save_templates_first(go)

    @on(RunJobs)
    def _run_jobs(self, message: RunJobs) -> None:
        self.show_pane("generate")
        self.generate.start(message.jobs)

    @on(ConversationsChanged)
    def _conversations_changed(self) -> None:
        self.review.stale = True
        if self.active_pane() == "review":
            self.review.relist()

    @on(PicksChanged)
    def _picks_changed(self) -> None:
        self.generate.show_plan()

    @on(SeedsChanged)
    def _seeds_changed(self) -> None:
        self.session.forget_seeds()
        self.seeds.load()
        self.run_check(announce=False)

    @on(SetupSaved)
    def _setup_saved(self) -> None:
        self._seeds_stamp = self._seed_file_stamp()
        self.generate.refresh_choices()
        self.templates.schedule_preview(0)
        self.seeds.load()
        self.run_check(announce=True)

    @on(TemplatesSaved)
    def _templates_saved(self) -> None:
        self.run_check(announce=True)

    def model_changed(self, status: str) -> None:
        self.sub_title = status
        with contextlib.suppress(NoMatches):  # not composed yet: its on_mount does the same
            self.templates.schedule_preview(0)
