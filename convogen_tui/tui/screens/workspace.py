"""One experiment: Setup, Templates, Seeds, Generate and Review as tabs, switched with F2-F6."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Header, TabbedContent, TabPane

from convogen_tui.core.errors import StorageError
from convogen_tui.tui.messages import ConversationsChanged, RunJobs, SetupSaved
from convogen_tui.tui.panes.generate import GeneratePane
from convogen_tui.tui.panes.review import ReviewPane
from convogen_tui.tui.panes.seeds import SeedsPane
from convogen_tui.tui.panes.setup import SetupPane
from convogen_tui.tui.panes.templates import TemplatesPane
from convogen_tui.tui.session import Session
from convogen_tui.tui.typed import convogen_app

PANES = [
    ("setup", "F2 Setup", "f2"),
    ("templates", "F3 Templates", "f3"),
    ("seeds", "F4 Seeds", "f4"),
    ("generate", "F5 Generate", "f5"),
    ("review", "F6 Review", "f6"),
]


class ExperimentScreen(Screen[None]):
    """The open experiment. Run keys work from every tab, so an edit is one key from a rerun."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *[
            Binding(key, f"show_pane('{pane}')", label.split(" ", 1)[1], show=False, priority=True)
            for pane, label, key in PANES
        ],
        Binding("ctrl+g", "generate", "Generate", priority=True),
        Binding("ctrl+r", "rerun", "Rerun", priority=True),
        Binding("ctrl+o", "app.experiments", "Experiments", show=False),
    ]

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session

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
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"ConvoGen · {self.session.experiment.name}"
        self.watch(convogen_app(self), "model_status", self.model_changed)
        self._focus_pane("templates")

    @property
    def generate(self) -> GeneratePane:
        return self.query_one(GeneratePane)

    @property
    def templates(self) -> TemplatesPane:
        return self.query_one(TemplatesPane)

    @property
    def review(self) -> ReviewPane:
        return self.query_one(ReviewPane)

    def active_pane(self) -> str:
        return str(self.query_one(TabbedContent).active)

    def show_pane(self, pane: str) -> None:
        self.query_one(TabbedContent).active = pane
        self._focus_pane(pane)

    def action_show_pane(self, pane: str) -> None:
        self.show_pane(pane)

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = str(event.pane.id)
        if pane == "generate":
            self.generate.show_plan()
        if pane == "review" and self.review.stale:
            self.review.relist()

    def _focus_pane(self, pane: str) -> None:
        targets = {
            "setup": "#setup-editor",
            "templates": f"#tpl-{self.templates.kind}",
            "seeds": "#seed-table",
            "generate": "#gen-conv",
            "review": "#rev-table",
        }
        self.call_after_refresh(lambda: self.query_one(targets[pane]).focus())

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
            self.session.reload()
            setup = self.query_one(SetupPane)
            setup.editor.load_text(self.session.experiment.setup_text)
            setup.refresh_view()
        elif path.name.endswith(".txt"):
            self.templates.reload_from_disk()
        else:
            self.review.relist()

    # runs ---------------------------------------------------------------------------------
    def _save_templates_first(self) -> None:
        try:
            written = self.templates.save()
        except StorageError as exc:  # the edits stay in the editors; the run says why it cannot save
            self.notify(str(exc), title="templates not saved", severity="error", timeout=15)
            return
        if written:
            self.notify(f"saved {', '.join(written)} before running")

    def action_generate(self) -> None:
        self._save_templates_first()
        self.show_pane("generate")
        self.generate.action_generate()

    def action_rerun(self) -> None:
        self._save_templates_first()
        self.show_pane("generate")
        self.generate.action_rerun()

    @on(RunJobs)
    def _run_jobs(self, message: RunJobs) -> None:
        self.show_pane("generate")
        self.generate.start(message.jobs)

    @on(ConversationsChanged)
    def _conversations_changed(self) -> None:
        self.review.stale = True
        if self.active_pane() == "review":
            self.review.relist()

    @on(SetupSaved)
    def _setup_saved(self) -> None:
        self.generate.refresh_choices()
        self.templates.schedule_preview(0)
        self.query_one(SeedsPane).load()

    def model_changed(self, status: str) -> None:
        self.sub_title = status
        with contextlib.suppress(NoMatches):  # not composed yet: its on_mount does the same
            self.templates.schedule_preview(0)
