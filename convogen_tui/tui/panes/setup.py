"""Setup pane: expt-setup.json with JSON highlighting, problems by key and line, the persona grid.

The problems are those of ``convogen check`` exactly (``core.check.check_experiment`` with the
model resolver, run by the experiment screen in a worker), so the app and the CLI never disagree.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from convogen_tui.core.errors import Problem
from convogen_tui.core.making.check import CheckReport
from convogen_tui.core.making.personas import persona_grid
from convogen_tui.core.persona import persona_label
from convogen_tui.tui.cells import display_safe
from convogen_tui.tui.editing import EditedFile
from convogen_tui.tui.messages import SetupSaved
from convogen_tui.tui.screens.dialogs import PersonaDialog
from convogen_tui.tui.session import Session
from convogen_tui.tui.widgets.editor import Editor, find_bindings
from convogen_tui.tui.widgets.lists import KeyList, KeyTable

EDITOR_HINT = "ctrl+s save · ^f find · Esc leaves the editor"


def problem_line(problem: Problem) -> str:
    """A problem as one short line: line and key first, since that is where the user looks."""
    where = []
    if problem.line is not None:
        where.append(f"line {problem.line}")
    if problem.key:
        where.append(problem.key)
    text = f"{', '.join(where)}: {problem.message}" if where else problem.message
    if problem.file is not None and problem.file.name not in ("expt-setup.json",):
        text = f"{problem.file.name}: {text}"
    if problem.hint:
        text += f" — {problem.hint}"
    return ("⚠ " if problem.severity != "error" else "✗ ") + display_safe(text)


class SetupPane(Vertical):
    """Edit the setup; ctrl+s saves and re-checks; Enter on a grid cell opens the persona texts."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", tooltip="save and check, as convogen check does"),
        *find_bindings(),
    ]

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self.file = EditedFile(session.experiment.setup_file)
        self.problems: list[Problem] = []

    def compose(self) -> ComposeResult:
        editor = Editor.code_editor(self.file.read(), language="json", id="setup-editor")
        editor.border_title = self.file.title()
        editor.border_subtitle = EDITOR_HINT
        yield self.file.bind(editor)
        with Horizontal(id="setup-bottom"):
            with Vertical(id="setup-grid-box"):
                yield Static("Personas (Enter: texts)", classes="caption")
                yield KeyTable(id="persona-grid", cursor_type="cell")
            yield KeyList(id="setup-problems")

    def on_mount(self) -> None:
        self.refresh_view()

    @property
    def editor(self) -> TextArea:
        return self.query_one("#setup-editor", TextArea)

    def action_find(self) -> None:
        self.query_one("#setup-editor", Editor).action_find()

    def action_go_to_line(self) -> None:
        self.query_one("#setup-editor", Editor).action_go_to_line()

    @on(TextArea.Changed, "#setup-editor")
    def _edited(self) -> None:
        self.editor.border_title = self.file.title()

    def show_report(self, report: CheckReport | None) -> None:
        """The problems of the last check (before one: the setup's own)."""
        own = self.session.experiment.problems
        self.problems = list(report.problems) if report is not None else list(own)
        problems = self.query_one("#setup-problems", OptionList)
        highlighted = problems.highlighted
        problems.clear_options()
        if self.problems:
            problems.add_options([Option(problem_line(p), id=str(i)) for i, p in enumerate(self.problems)])
            if highlighted is not None:
                problems.highlighted = min(highlighted, len(self.problems) - 1)
        elif report is None:
            problems.add_option(Option("checking…", disabled=True))
        else:
            problems.add_option(Option("✓ experiment is valid (as convogen check)", disabled=True))
        errors = sum(1 for p in self.problems if p.severity == "error")
        problems.border_title = f"Problems ({errors})" if report is not None else "Problems"

    def refresh_view(self) -> None:
        self.show_report(self.session.report)
        grid = self.query_one("#persona-grid", DataTable)
        grid.clear(columns=True)
        motivations, dispositions, present = persona_grid(self.session.personas())
        if not motivations:
            return
        grid.add_column("", key="_")
        for disposition in dispositions:
            grid.add_column(display_safe(disposition), key=disposition)
        for motivation in motivations:
            cells = ["●" if (motivation, d) in present else "·" for d in dispositions]
            grid.add_row(display_safe(motivation), *cells, key=motivation)

    def setup_changed(self) -> None:
        """The file was saved or reloaded: read the experiment again and tell the other panes."""
        self.session.reload()
        self.session.report = None
        self.editor.border_title = self.file.title()
        self.refresh_view()
        self.post_message(SetupSaved())

    def action_save(self) -> None:
        """Write the file as typed (even if invalid, so no work is lost), then check it."""
        from convogen_tui.tui.editing import save_files

        if not self.file.dirty:
            self.notify("nothing to save in expt-setup.json")
            return
        save_files(self, [self.file], self.setup_changed)

    def poll_disk(self) -> None:
        said = self.file.poll()
        if said:
            self.notify(said, severity="warning" if "unsaved" in said else "information", timeout=8)
            if "reloaded" in said:
                self.setup_changed()

    def focus_first_problem(self) -> None:
        """ctrl+l: the problem list, its first problem highlighted."""
        problems = self.query_one("#setup-problems", OptionList)
        problems.focus()
        if self.problems:
            problems.highlighted = 0
        else:
            self.notify("no problems: the experiment is valid")

    @on(OptionList.OptionSelected, "#setup-problems")
    def _goto_problem(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is None:
            return
        problem = self.problems[int(event.option.id)]
        if problem.line and (problem.file is None or problem.file == self.session.experiment.setup_file):
            self.editor.move_cursor((problem.line - 1, 0))
            self.editor.focus()

    @on(DataTable.CellSelected, "#persona-grid")
    def _open_persona(self, event: DataTable.CellSelected) -> None:
        setup = self.session.experiment.setup
        if setup is None:
            return
        motivation = str(event.cell_key.row_key.value)
        disposition = str(event.cell_key.column_key.value)
        profile = next((p for p in setup.user_profiles if p.motivation == motivation), None)
        if profile is None:
            return
        files = [("motivation " + motivation, self.session.experiment.resolve(profile.path))]
        entry = next((d for d in profile.dispositions if d.name == disposition), None)
        if entry is not None:
            files.append(("disposition " + disposition, self.session.experiment.resolve(entry.path)))
        title = persona_label(motivation, disposition) if entry else f"motivation {motivation}"

        def saved(changed: bool | None) -> None:
            if changed:
                self.session.reload()
                self.refresh_view()
                self.post_message(SetupSaved())

        self.app.push_screen(PersonaDialog(title, files), saved)
