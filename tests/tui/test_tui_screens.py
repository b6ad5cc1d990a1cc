"""Issue 24 at 80x24: screens that draw what they hold (Models columns, Review's flags and ids, the
detail pane after a delete elsewhere) and the template editor usable at 80 columns (full width,
find, go to line, the preview's scroll kept on save)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from textual.app import App, ComposeResult
from textual.widgets import DataTable, Input, Static, TextArea

from convogen_tui.core.judging.quality import RULE_NAMES
from convogen_tui.tui.panes.review import ReviewPane, flag_code, flags_cell, short_id
from convogen_tui.tui.screens.models import COLUMNS, ModelsScreen
from convogen_tui.tui.widgets.editor import Editor, FindBar, find_next
from convogen_tui.tui.widgets.lists import KeyTable
from convogen_tui.tui.widgets.stream_view import StreamView
from tests.core.judging.test_quality import DATA, install
from tests.tui_helpers import REPO, review_table, sample_app, sample_root, wait_for

__all__ = ["sample_root"]


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
    async with sample_app(sample_root) as (app, pilot, _screen):
        await pilot.press("f7")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelsScreen) and bool(app.screen.models))
        table = app.screen.query_one("#models-table", DataTable)
        first = [str(cell) for cell in table.get_row_at(0)]
        line = next(s.text for s in table.render_lines(table.region.reset_offset) if first[1] in s.text)
        assert all(f" {cell} " in f" {line} " for cell in first if cell), line


# review: flags that fit, the id, the detail after a delete elsewhere ------------------------------
def test_every_rule_has_its_own_code() -> None:
    codes = [flag_code(rule) for rule in (*RULE_NAMES, "unreadable")]
    assert len(set(codes)) == len(codes) and all(len(code) <= 3 for code in codes)
    assert flag_code("judge-low-score") == "jls"  # a rule added later still gets a short code


def test_flags_in_full_when_they_fit_else_the_count_and_codes() -> None:
    flags = ["no-dialog", "restyle-mismatch", "near-duplicate"]
    assert flags_cell("", flags, 60) == "no-dialog restyle-mismatch near-duplicate"
    assert flags_cell("", flags, 14) == "3: nd rmm dup"  # was "no-dialog rest…"
    assert flags_cell("flagged", flags, 11).startswith("flagged 3:")
    assert flags_cell("kept", [], 11) == "kept"


def test_short_ids_are_unique_prefixes_of_eight_or_more() -> None:
    ids = ["4f3a9c2e-1111", "4f3a9c2e-2222", "9b0d77aa-3333", "ab"]
    assert short_id("9b0d77aa-3333", ids) == "9b0d77aa"
    assert short_id("4f3a9c2e-1111", ids) == "4f3a9c2e-1"
    assert short_id("ab", ids) == "ab"


def install_flagged(root: Path) -> None:
    install(
        root / "inst-templates" / "sample",
        [
            DATA / "cases" / f"{name}.json"
            for name in ("clean-plain-fluoride", "user-first", "restyled-700-characters")
        ],
    )


async def test_review_counts_flags_and_the_detail_names_them_with_a_copyable_id(
    sample_root: Path,
) -> None:
    install_flagged(sample_root)
    async with sample_app(sample_root) as (app, pilot, screen):
        table = await review_table(pilot, screen, 3)
        review = screen.query_one(ReviewPane)
        flagged = max(review.shown, key=lambda r: len(r.flags))
        table.move_cursor(row=review.shown.index(flagged))
        conv = screen.query_one("#rev-conv", StreamView)
        await wait_for(pilot, lambda: f"seed {flagged.tweet_id}" in conv.text)
        cell = str(table.get_row_at(table.cursor_row)[-1])
        assert cell.startswith(f"{len(flagged.flags)}:") or cell == " ".join(flagged.flags)
        assert all(flag_code(flag) in cell.split() or flag in cell.split() for flag in flagged.flags)
        assert all(flag in conv.text for flag in flagged.flags)  # the full list, in the detail
        short = str(conv.border_title).split(" · ")[0]
        assert len(short) >= 8 and review.session.store.find(short) == flagged.id  # what convogen show takes
        await pilot.press("y")
        assert app.clipboard == flagged.id
        assert any(flagged.id in str(n.message) and short in str(n.message) for n in app._notifications)


async def test_after_a_delete_elsewhere_the_detail_is_the_highlighted_rows(sample_root: Path) -> None:
    install_flagged(sample_root)
    async with sample_app(sample_root) as (_app, pilot, screen):
        table = await review_table(pilot, screen, 3)
        review = screen.query_one(ReviewPane)
        conv = screen.query_one("#rev-conv", StreamView)
        doomed = review.current()
        assert doomed is not None
        await wait_for(pilot, lambda: "User:" in conv.text)
        deleted = subprocess.run(
            [sys.executable, "-m", "convogen_tui", "delete", "sample", doomed.id, "--root", str(sample_root)],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert deleted.returncode == 0, deleted.stderr
        await wait_for(pilot, lambda: table.row_count == 2)
        # the same refresh that took the row away changed the detail: no frame shows the deleted one
        now = review.current()
        assert now is not None and now.id != doomed.id
        assert str(conv.border_title).endswith(now.persona) and now.id.startswith(
            str(conv.border_title).split(" ")[0]
        )
        assert doomed.tweet not in conv.text
        await wait_for(pilot, lambda: now.tweet_id in conv.text)


# editing at 80 columns ---------------------------------------------------------------------------
def test_find_next_wraps_and_ignores_case_unless_asked() -> None:
    text = "SocBot says hi. socbot again. SOCBOT"
    assert find_next(text, "socbot", 0) == (0, 1, 3)
    assert find_next(text, "socbot", 1) == (16, 2, 3)
    assert find_next(text, "socbot", 31) == (0, 1, 3)  # past the last one: back to the first
    assert find_next(text, "SOCBOT", 0) == (30, 1, 1)  # a capital: exact case
    assert find_next(text, "robot", 0) is None and find_next(text, "", 0) is None


async def test_template_editor_takes_the_full_width_and_stays_so(sample_root: Path) -> None:
    async with sample_app(sample_root) as (_app, pilot, screen):
        await pilot.press("f3")
        editor = screen.query_one("#tpl-conv-gen", TextArea)
        preview = screen.query_one("#tpl-preview", TextArea)
        await wait_for(pilot, lambda: editor.size.width > 0)
        assert editor.size.width < 40  # beside the preview
        editor.focus()
        await pilot.press("f10")
        await wait_for(pilot, lambda: editor.size.width >= 76)
        assert preview.display and preview.region.y > editor.region.bottom  # the prompt below, still shown
        await pilot.press("f6", "f3")  # remembered while the experiment is open
        await wait_for(pilot, lambda: screen.query_one("#tpl-conv-gen", TextArea).size.width >= 76)
        screen.query_one("#tpl-conv-gen", TextArea).focus()
        await pilot.press("alt+w")  # the same key where F-keys do not get through
        await wait_for(pilot, lambda: editor.size.width < 40)


async def test_find_and_go_to_line_in_the_template_and_setup_editors(sample_root: Path) -> None:
    async with sample_app(sample_root) as (app, pilot, screen):
        await pilot.press("f3")
        editor = screen.query_one("#tpl-conv-gen", Editor)
        editor.focus()
        editor.move_cursor((0, 0))
        text = editor.text
        await pilot.press("ctrl+f", *"socbot")
        bar = screen.query_one(FindBar)
        assert app.focused is bar.query_one(Input)  # typing goes into the bar, not the template
        await pilot.press("enter")
        first = text.lower().index("socbot")
        assert editor.selected_text.lower() == "socbot"
        assert editor.document.get_index_from_location(editor.selection.start) == first
        await pilot.press("enter")
        assert editor.document.get_index_from_location(editor.selection.start) == text.lower().index(
            "socbot", first + 1
        )
        count = text.lower().count("socbot")
        assert f"2/{count}" in str(bar.query_one(".find-result", Static).render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: not screen.query(FindBar))
        assert app.focused is editor and editor.text == text  # nothing typed into the template

        await pilot.press("ctrl+j", "7", "enter")
        await wait_for(pilot, lambda: not screen.query(FindBar))
        assert editor.cursor_location == (6, 0) and app.focused is editor and editor.text == text

        screen.query_one("#tpl-preview", TextArea).focus()  # from the prompt: the editor's find
        await pilot.press("ctrl+f")
        assert screen.query_one(FindBar).editor is editor
        await pilot.press("escape")
        await wait_for(pilot, lambda: not screen.query(FindBar))

        await pilot.press("f2")
        setup = screen.query_one("#setup-editor", Editor)
        setup.focus()
        setup.move_cursor((0, 0))
        await pilot.press("ctrl+f", *"motivation", "enter")
        assert setup.selected_text == "motivation"
        await pilot.press("escape", "alt+g", "3", "enter")
        await wait_for(pilot, lambda: setup.cursor_location == (2, 0))


async def test_the_preview_keeps_its_scroll_when_the_template_is_saved(sample_root: Path) -> None:
    async with sample_app(sample_root) as (_app, pilot, screen):
        await pilot.press("f3")
        preview = screen.query_one("#tpl-preview", TextArea)
        await wait_for(pilot, lambda: preview.max_scroll_y > 4)
        preview.scroll_to(y=4, animate=False)
        await wait_for(pilot, lambda: preview.scroll_y == 4)
        editor = screen.query_one("#tpl-conv-gen", TextArea)
        editor.focus()
        editor.move_cursor(editor.document.end)
        await pilot.press(*" Be brief.", "ctrl+s")
        await wait_for(pilot, lambda: "Be brief." in preview.text)
        await wait_for(pilot, lambda: preview.scroll_y == 4)  # was back at the top
