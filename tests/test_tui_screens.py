"""Issue 24 at 80x24: screens that draw what they hold (Models columns, Review's flags and ids, the
detail pane after a delete elsewhere) and the template editor usable at 80 columns (full width,
find, go to line, the preview's scroll kept on save)."""

from __future__ import annotations

from pathlib import Path

from textual.app import App, ComposeResult
from textual.widgets import DataTable

from convogen_tui.tui.app import ConvogenApp
from convogen_tui.tui.screens.models import COLUMNS, ModelsScreen
from convogen_tui.tui.screens.workspace import ExperimentScreen
from convogen_tui.tui.widgets.lists import KeyTable
from tests.tui_helpers import sample_root, wait_for

__all__ = ["sample_root"]


async def opened(pilot, app: ConvogenApp) -> ExperimentScreen:  # type: ignore[no-untyped-def]
    await wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen))
    assert isinstance(app.screen, ExperimentScreen)
    return app.screen


class OneTable(App[None]):
    def compose(self) -> ComposeResult:
        yield KeyTable(id="t")


async def test_a_filled_table_has_its_columns_sized_in_the_first_frame() -> None:
    """Drawn before the table idles (a busy machine): columns already fit their cells, not their
    labels (``defau  llam  819`` was Models' row once, failing its snapshot)."""
    app = OneTable()
    async with app.run_test(size=(80, 10)):
        table = app.query_one(KeyTable)
        row = ["", "default", "llama", "134.5M", "Q4_1", "8192", "93.8 MiB", "chatml"]
        table.fill(COLUMNS, [("a", row)])
        # no await since: the table has not idled, and this is what a frame now would draw
        drawn = [column.get_render_width(table) - 2 * table.cell_padding for column in table.ordered_columns]
        assert drawn == [max(len(label), len(cell)) for label, cell in zip(COLUMNS, row, strict=True)]
        longer = ["", "a-much-longer-model-name", *row[2:]]
        table.fill(COLUMNS, [("a", row), ("b", longer)])
        assert table.ordered_columns[1].get_render_width(table) - 2 * table.cell_padding == len(longer[1])


async def test_models_screen_shows_whole_cells(sample_root: Path) -> None:
    app = ConvogenApp(sample_root, "sample", load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await opened(pilot, app)
        await pilot.press("f7")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelsScreen) and bool(app.screen.models))
        table = app.screen.query_one("#models-table", DataTable)
        first = [str(cell) for cell in table.get_row_at(0)]
        line = next(s.text for s in table.render_lines(table.region.reset_offset) if first[1] in s.text)
        assert all(f" {cell} " in f" {line} " for cell in first if cell), line
