"""Setup pane: expt-setup.json with JSON highlighting, problems by key and line, the persona grid."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from convogen_tui.core.errors import Problem, StorageError
from convogen_tui.core.files import atomic_write_text
from convogen_tui.core.personas import persona_grid
from convogen_tui.tui.messages import SetupSaved
from convogen_tui.tui.screens.dialogs import PersonaDialog
from convogen_tui.tui.session import Session


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
    return ("⚠ " if problem.severity != "error" else "✗ ") + text


class SetupPane(Vertical):
    """Edit the setup; ctrl+s saves and re-validates; Enter on a grid cell opens the persona texts."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+l", "focus_problems", "Problems", show=False),
    ]

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session

    def compose(self) -> ComposeResult:
        editor = TextArea.code_editor(self.session.experiment.setup_text, language="json", id="setup-editor")
        editor.border_title = "expt-setup.json"
        yield editor
        with Horizontal(id="setup-bottom"):
            with Vertical(id="setup-grid-box"):
                yield Static("Personas: motivation x disposition (Enter: texts)", classes="caption")
                yield DataTable(id="persona-grid", cursor_type="cell")
            yield OptionList(id="setup-problems")

    def on_mount(self) -> None:
        self.refresh_view()

    @property
    def editor(self) -> TextArea:
        return self.query_one("#setup-editor", TextArea)

    def refresh_view(self) -> None:
        experiment = self.session.experiment
        problems = self.query_one("#setup-problems", OptionList)
        problems.clear_options()
        if experiment.problems:
            problems.add_options(
                [Option(problem_line(p), id=str(i)) for i, p in enumerate(experiment.problems)]
            )
        else:
            problems.add_option(Option("✓ setup is valid", disabled=True))
        problems.border_title = f"Problems ({len(experiment.problems)})"
        grid = self.query_one("#persona-grid", DataTable)
        grid.clear(columns=True)
        motivations, dispositions, present = persona_grid(self.session.personas())
        if not motivations:
            return
        grid.add_column("", key="_")
        for disposition in dispositions:
            grid.add_column(disposition, key=disposition)
        for motivation in motivations:
            cells = ["●" if (motivation, d) in present else "·" for d in dispositions]
            grid.add_row(motivation, *cells, key=motivation)

    def action_save(self) -> None:
        """Write the file as typed (even if invalid, so no work is lost), then show its problems."""
        try:
            atomic_write_text(self.session.experiment.setup_file, self.editor.text)
        except StorageError as exc:  # read-only, full disk: the text stays in the editor
            self.notify(str(exc), title="not saved", severity="error", timeout=15)
            return
        experiment = self.session.reload()
        self.refresh_view()
        errors = len(experiment.errors)
        if errors:
            self.notify(f"saved with {errors} problem(s); see the list below", severity="warning")
        else:
            self.notify("saved; setup is valid")
        self.post_message(SetupSaved())

    def action_focus_problems(self) -> None:
        self.query_one("#setup-problems", OptionList).focus()

    @on(OptionList.OptionSelected, "#setup-problems")
    def _goto_problem(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is None:
            return
        problem = self.session.experiment.problems[int(event.option.id)]
        if problem.line:
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
        title = f"{motivation} x {disposition}" if entry else f"motivation {motivation}"

        def saved(changed: bool | None) -> None:
            if changed:
                self.session.reload()
                self.refresh_view()
                self.post_message(SetupSaved())

        self.app.push_screen(PersonaDialog(title, files), saved)
