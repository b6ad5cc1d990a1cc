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
from textual.widget import Widget
from textual.widgets import Select, TabbedContent, TabPane

from convogen_tui.core.errors import StorageError
from convogen_tui.core.keeping.backups import backup_path, change_summary, keep_backup, restore_backup
from convogen_tui.core.keeping.tracked import Stamp, stamp
from convogen_tui.core.making.check import check_experiment
from convogen_tui.tui.commands import PaletteCommand
from convogen_tui.tui.editing import EditedFile, KeepsEdits
from convogen_tui.tui.keys import HelpSection, KeyFooter, binding_keys
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
from convogen_tui.tui.panes.seeds import SeedsPane, SeedTable
from convogen_tui.tui.panes.setup import SetupPane
from convogen_tui.tui.panes.templates import TemplatesPane
from convogen_tui.tui.session import Session
from convogen_tui.tui.typed import convogen_app
from convogen_tui.tui.widgets.editor import takes_text
from convogen_tui.tui.widgets.titlebar import TitleBar
from convogen_tui.tui.workers import ReportsWorkerErrors, background

PANES = [
    ("setup", "F2 Setup", "f2"),
    ("templates", "F3 Templates", "f3"),
    ("seeds", "F4 Seeds", "f4"),
    ("generate", "F5 Generate", "f5"),
    ("review", "F6 Review", "f6"),
]
POLL_S = 1.0  # how often the screen looks at the disk
GENERATE_HELP = "generate the picked seeds (saves edited templates first, saying what changed)"
RERUN_HELP = "rerun the last seed and persona (saves edited templates first, saying what changed)"
UNDO_SAVE_HELP = "put back the templates as they were before ctrl+g / ctrl+r saved them"
#: where a tab switch puts the focus: a list or the preview, never an editor (``e`` goes there)
FOCUS = {
    "setup": "#persona-grid",
    "templates": "#tpl-preview",
    "seeds": "#seed-table",
    "generate": "#gen-conv",
    "review": "#rev-table",
}
#: each tab's drop-down, opened by its own key (p, v) instead of 2-4 Tabs
DROP_DOWNS = {"generate": "#gen-persona", "review": "#rev-show"}
DROP_HELP = {
    "generate": "choose the personas: random, all, or one (opens the drop-down)",
    "review": "show: all, a mark, any flag, no flag, not restyled, one rule (opens the drop-down)",
}
DROP_KEYS = ("Enter/space", "on a drop-down: open it; ↑ ↓ choose, Enter takes, Esc closes")
HELP_TITLES = {pane: f"{label.split(' ', 1)[1]} ({key.upper()})" for pane, label, key in PANES}


class ExperimentScreen(ReportsWorkerErrors, KeepsEdits, Screen[None]):
    """The open experiment. Run keys work from every tab, so an edit is one key from a rerun."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *[
            Binding(
                key,
                f"show_pane('{pane}')",
                label.split(" ", 1)[1],
                show=False,
                priority=True,
                id=f"tab.{pane}",
            )
            for pane, label, key in PANES
        ],
        # F-keys often do not reach the app over SSH or tmux: the tab's digit works too (outside
        # text fields, where a digit is typed instead)
        *[
            Binding(
                key[1:], f"show_pane('{pane}')", label.split(" ", 1)[1], show=False, id=f"tab.{pane}.digit"
            )
            for pane, label, key in PANES
        ],
        Binding(
            "e,enter", "edit", "Edit", tooltip="Setup, Templates: into the editor (Esc leaves)", id="edit"
        ),
        Binding(
            "p", "drop_down('generate')", "Personas", tooltip=DROP_HELP["generate"], id="dropdown.generate"
        ),
        Binding("v", "drop_down('review')", "Show", tooltip=DROP_HELP["review"], id="dropdown.review"),
        Binding("ctrl+g", "generate", "Generate", priority=True, tooltip=GENERATE_HELP, id="generate"),
        Binding("ctrl+r", "rerun", "Rerun", priority=True, tooltip=RERUN_HELP, id="rerun"),
        Binding(
            "ctrl+l",
            "problems",
            "Problems",
            priority=True,
            tooltip="the first problem of the check",
            id="problems",
        ),
        Binding("ctrl+u", "undo_save", "Undo save", tooltip=UNDO_SAVE_HELP, id="undo_save"),
        Binding(
            "ctrl+o",
            "app.experiments",
            "Experiments",
            show=False,
            tooltip="back to the experiments",
            id="close",
        ),
    ]

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self._dirs: tuple[Stamp | None, ...] = self._dir_stamps()
        self._seeds_stamp: Stamp | None = self._seed_file_stamp()
        self._told_problems = False  # problems are announced once on opening, then after saves
        self._focus_serial = 0  # the latest request to focus a pane wins
        self._focus_reset = False  # Textual moved the focus off a hidden widget since last looked
        self._run_saved: list[Path] = []  # templates a run saved, whose old text ctrl+u puts back

    def compose(self) -> ComposeResult:
        yield TitleBar()
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
        # focused now, before the tab is laid out: a focus left in the hidden tab would pull it
        # back (TabbedContent shows the tab of a focused widget), costing two more layouts
        widget = self.query_one(target or FOCUS[pane])
        if widget.focusable:
            widget.focus(scroll_visible=False)
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
        every 50 ms (for up to 30 s: a busy machine lays the tab out late) until the widget is laid
        out and focused; a newer request wins, and so does the user (or a test) putting the focus
        elsewhere in the same tab meanwhile. Textual moving the focus to a neighbour (a late Hide
        blurs the hidden widget) is no such move: the widget is focused again.
        """
        self._focus_serial += 1
        serial = self._focus_serial
        self._focus_reset = False

        def focus(tries: int, placed: bool = False) -> None:
            if serial != self._focus_serial or not self.is_current:
                return
            widget = self.query_one(target or FOCUS[pane])
            focused = self.app.focused
            moved = placed and not self._focus_reset and focused is not None and self._in_tab(focused, pane)
            self._focus_reset = False
            if focused is not None and focused.region.area and (focused is widget or moved):
                return  # shown and focused (or since focused on purpose elsewhere in the tab): done
            if focused is widget or widget.focusable:
                widget.focus()
                placed = True
            if tries > 0:
                self.set_timer(0.05, lambda: focus(tries - 1, placed))

        self.call_after_refresh(focus, 600)

    def _reset_focus(self, widget: Widget, avoiding: list[Widget] | None = None) -> None:
        """Textual moves the focus off a widget that is hidden or removed: noted, so that
        :meth:`_focus_pane` does not take the move for the user's."""
        self._focus_reset = True
        super()._reset_focus(widget, avoiding)

    def _in_tab(self, widget: Widget, pane: str) -> bool:
        return any(node.id == pane and isinstance(node, TabPane) for node in widget.ancestors)

    def action_edit(self) -> None:
        """Into the tab's editor: the only way a key lands in a text field after a tab switch."""
        pane = self.active_pane()
        self.show_pane(pane, "#setup-editor" if pane == "setup" else f"#tpl-{self.templates.kind}")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "edit":  # not from inside a text field, where e and Enter are typed
            return self.active_pane() in ("setup", "templates") and not takes_text(self.app.focused)
        if action == "drop_down":
            return self.active_pane() == parameters[0]
        if action == "undo_save":
            return bool(self._run_saved)
        return True

    def action_drop_down(self, pane: str) -> None:
        """Focus the tab's drop-down and open it (↑ ↓ choose, Enter takes, Esc closes)."""
        select = self.query_one(DROP_DOWNS[pane], Select)
        select.focus()
        select.expanded = True

    # what the app asks --------------------------------------------------------------------
    def run_going(self) -> bool:
        """Whether a generation runs now (the app asks before switching models)."""
        return self.generate.running

    def save_before_editing(self, path: Path, then: Callable[[], None]) -> bool:
        """Before $EDITOR opens a template, save the edited ones; True when ``then`` runs after."""
        if path.suffix != ".txt" or not self.templates.dirty():
            return False
        self.templates.save(then)
        return True

    def help_section(self) -> str:
        """The help section of the tab shown now (help opens there)."""
        return HELP_TITLES[self.active_pane()]

    @classmethod
    def help_sections(cls) -> list[HelpSection]:
        """This screen's keys and each tab's, from their own bindings (tabs come from PANES)."""
        tabs = [(f"{key.upper()} or {key[1:]}", label.split(" ", 1)[1]) for _pane, label, key in PANES]
        bindings = [b for b in cls.BINDINGS if isinstance(b, Binding)]
        own = [b for b in bindings if not (b.id or "").startswith(("tab.", "dropdown."))]
        drops = {pane: binding_keys(b for b in bindings if b.id == f"dropdown.{pane}") for pane in DROP_DOWNS}
        drops = {pane: [*keys, DROP_KEYS] for pane, keys in drops.items()}
        return [
            HelpSection("Experiment (any tab; digits outside text fields)", tabs + binding_keys(own)),
            HelpSection(
                "Editors (setup, templates, persona texts)",
                [
                    ("e/Enter", "from the tab's list or preview: into its editor"),
                    ("Esc", "leave the editor (then Tab / shift+Tab moves on)"),
                    ("ctrl+z / ctrl+y", "undo / redo (a reload from disk too)"),
                ],
            ),
            HelpSection(
                HELP_TITLES["setup"],
                [*binding_keys(SetupPane.BINDINGS), ("Enter", "on a grid cell: persona texts")],
            ),
            HelpSection(HELP_TITLES["templates"], binding_keys(TemplatesPane.BINDINGS)),
            HelpSection(HELP_TITLES["seeds"], binding_keys([*SeedTable.BINDINGS, *SeedsPane.BINDINGS])),
            HelpSection(HELP_TITLES["generate"], [*binding_keys(GeneratePane.BINDINGS), *drops["generate"]]),
            HelpSection(HELP_TITLES["review"], [*binding_keys(ReviewPane.BINDINGS), *drops["review"]]),
        ]

    def palette_commands(self) -> list[PaletteCommand]:
        """This screen's commands for the palette (commands.py), from its own tabs and panes."""
        commands = [
            PaletteCommand(f"Go to {label.split(' ', 1)[1]}", key.upper(), lambda p=pane: self.show_pane(p))
            for pane, label, key in PANES
        ]
        generate, review = self.generate, self.review
        commands += [
            PaletteCommand("Generate the picked seeds", "ctrl+g", self.action_generate),
            PaletteCommand("Rerun the last seed and persona", "ctrl+r", self.action_rerun),
            PaletteCommand("Skip the live conversation", "s on Generate", generate.action_skip),
            PaletteCommand("Cancel the run", "Esc on Generate", generate.action_cancel),
            PaletteCommand(
                "Restyle the conversations without a twin", "t on Generate", generate.action_restyle
            ),
            PaletteCommand("Judge the pairs not judged yet", "J on Generate", generate.action_judge),
            PaletteCommand("Save templates", "ctrl+s on Templates", self.templates.action_save),
            PaletteCommand("Problems", "the first problem of the check (ctrl+l)", self.action_problems),
            PaletteCommand("Refresh the conversations", "r on Review", review.action_refresh),
            PaletteCommand("Undo the last delete", "u on Review", review.action_undo),
            PaletteCommand(
                "Empty the trash",
                "delete trashed conversations for good (E on Review)",
                review.action_empty_trash,
            ),
            PaletteCommand(
                "Hydrate tweet ids",
                "fetch seed texts through the X API (h on Seeds)",
                lambda: (self.show_pane("seeds"), self.seeds.action_hydrate()),
            ),
        ]
        if self._run_saved:
            commands.append(
                PaletteCommand("Undo the templates' save", f"ctrl+u: {UNDO_SAVE_HELP}", self.action_undo_save)
            )
        return commands

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
        """Save edited templates before a run, saying what changed, with ctrl+u to put it back."""
        edited = [f for f in self.templates.edited_files() if f.dirty]
        if not edited:
            then()
            return
        before = {f.path: f.tracked.base_text for f in edited}

        def saved() -> None:
            said = []
            expt = self.session.experiment.dir
            for f in edited:
                old, new = before[f.path], f.tracked.base_text
                if old == new:
                    continue  # reloaded from disk on a conflict, or not written
                try:
                    keep_backup(expt, f.path, old)
                except StorageError as exc:
                    self.notify(f"no backup of {f.label}: {exc}", severity="warning", timeout=12)
                    continue
                self._run_saved = [p for p in self._run_saved if p != f.path] + [f.path]
                said.append(f"saved {f.label}: {change_summary(old, new)}")
            if said:
                self.refresh_bindings()
                self.notify("\n".join([*said, "ctrl+u puts the old text back"]), timeout=15, markup=False)
            then()

        self.templates.save(saved)

    def action_undo_save(self) -> None:
        """ctrl+u: the templates a run saved get their previous text back (from .convogen/backups)."""
        expt = self.session.experiment.dir
        restored = []
        for path in self._run_saved:
            try:
                if restore_backup(expt, path):
                    restored.append(path.name)
            except StorageError as exc:
                self.notify(str(exc), title="not restored", severity="error", timeout=12)
                return
        self._run_saved = []
        self.refresh_bindings()
        if restored:
            self.templates.reload_from_disk()
            self.notify(f"put back the previous {', '.join(restored)}")
        else:
            self.notify(f"no backup left under {backup_path(expt, Path('x')).parent}", severity="warning")

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
