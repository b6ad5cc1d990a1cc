"""The first screen: every experiment under the root with its counts and a validity mark."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.experiment import find_experiments
from convogen_tui.core.scaffold import (
    ExperimentCounts,
    copy_experiment,
    create_from_sample,
    experiment_counts,
)
from convogen_tui.tui.screens.dialogs import AskDialog
from convogen_tui.tui.typed import convogen_app


class ExperimentsScreen(Screen[None]):
    """Pick an experiment to open, or make a new one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", priority=False),
        Binding("n", "new", "New from sample"),
        Binding("c", "copy", "Copy"),
        Binding("r", "refresh", "Refresh"),
    ]

    class Scanned(Message):
        def __init__(self, rows: list[ExperimentCounts]) -> None:
            super().__init__()
            self.rows = rows

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.rows: list[ExperimentCounts] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"Experiments under {self.root}", id="expts-title", markup=False)
        yield DataTable(id="expts", cursor_type="row", zebra_stripes=True)
        yield Static("", id="expts-hint", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "ConvoGen"
        self.sub_title = "experiments"
        table = self.query_one(DataTable)
        table.add_columns("Experiment", "Valid", "Convs", "Restyled", "Flagged", "Trash")
        self.action_refresh()

    def on_screen_resume(self) -> None:
        self.action_refresh()

    def action_refresh(self) -> None:
        self.query_one("#expts-hint", Static).update("scanning…")
        self._scan()

    @work(thread=True, exclusive=True, group="scan")
    def _scan(self) -> None:
        rows = []
        for path in find_experiments(self.root):
            try:
                rows.append(experiment_counts(path))
            except (ConvogenError, OSError):
                rows.append(ExperimentCounts(path, path.name, False, 1, 0, 0, 0, 0))
        self.post_message(self.Scanned(rows))

    @on(Scanned)
    def _show(self, message: Scanned) -> None:
        table = self.query_one(DataTable)
        selected = self.selected()
        table.clear()
        self.rows = message.rows
        for row in self.rows:
            mark = "✓" if row.ok else f"✗ {row.problems}"
            table.add_row(
                row.name, mark, row.conversations, row.restyled, row.flagged, row.trash, key=str(row.path)
            )
        if selected is not None:
            keys = [str(r.path) for r in self.rows]
            if str(selected.path) in keys:
                table.move_cursor(row=keys.index(str(selected.path)))
        hint = "Enter: open   n: new from the sample   c: copy the selected one"
        if not self.rows:
            hint = f"No experiment under {self.root}. Press n to create one from the sample."
        self.query_one("#expts-hint", Static).update(hint)

    def selected(self) -> ExperimentCounts | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row < 0 or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    @on(DataTable.RowSelected)
    def _selected(self, _event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        row = self.selected()
        if row is not None:
            convogen_app(self).open_experiment(row.path)

    def action_new(self) -> None:
        def made(name: str | None) -> None:
            if name:
                self._make(lambda: create_from_sample(self.root, name))

        self.app.push_screen(AskDialog("Name of the new experiment (a copy of the sample):"), made)

    def action_copy(self) -> None:
        row = self.selected()
        if row is None:
            self.notify("no experiment to copy; press n to start from the sample", severity="warning")
            return

        def made(name: str | None) -> None:
            if name:
                self._make(lambda: copy_experiment(row.path, self.root, name))

        self.app.push_screen(AskDialog(f"Copy '{row.name}' (setup, templates, personas) as:"), made)

    def _make(self, create) -> None:  # type: ignore[no-untyped-def]
        try:
            path = create()
        except (ConvogenError, OSError) as exc:
            self.notify(str(exc), title="cannot create the experiment", severity="error", timeout=10)
            return
        self.notify(f"created {path}")
        convogen_app(self).open_experiment(path)
