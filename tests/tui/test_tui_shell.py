"""The app's shell: stray keys never edit data, help opens where it was asked, palette commands
come from the screens, drop-downs have keys, the title bar shows the model line whole, and a run
that saves edited templates says what it saved and can put it back. Panes are mounted on their own
in a small host app where the whole app is not needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Select, Static, TextArea

from convogen_tui.core.keeping.backups import backup_path, change_summary
from convogen_tui.tui.app import ConvogenApp
from convogen_tui.tui.commands import commands_for
from convogen_tui.tui.panes.review import ReviewPane
from convogen_tui.tui.panes.templates import TemplatesPane
from convogen_tui.tui.screens.dialogs import HelpScreen
from convogen_tui.tui.screens.experiments import ExperimentsScreen
from convogen_tui.tui.screens.workspace import ExperimentScreen
from convogen_tui.tui.session import Session
from convogen_tui.tui.typed import ShellApp
from convogen_tui.tui.widgets.titlebar import TitleBar, fit_title
from tests.scripted import ScriptedBackend
from tests.tui_helpers import fake_conversation, sample_root, wait_for

__all__ = ["sample_root"]  # the fixture, imported for pytest
pytestmark = pytest.mark.app
SIZE = (80, 24)


def expt(root: Path) -> Path:
    return root / "inst-templates" / "sample"


def notes(app: ConvogenApp) -> list[str]:
    return [n.message for n in app._notifications]


async def opened(pilot, app: ConvogenApp) -> ExperimentScreen:  # type: ignore[no-untyped-def]
    await wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen))
    assert isinstance(app.screen, ExperimentScreen)
    return app.screen


# stray keys -------------------------------------------------------------------------------------
async def test_digits_meant_as_tabs_never_land_in_a_template(sample_root: Path) -> None:
    """Review, then 3 (Templates) and 4 meant as Seeds: the template is untouched, Seeds shows."""
    template = expt(sample_root) / "conv-gen.txt"
    before = template.read_text()
    app = ConvogenApp(sample_root, "sample", load_model=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await opened(pilot, app)
        await pilot.press("6")
        await wait_for(pilot, lambda: app.focused is not None and app.focused.id == "rev-table")
        await pilot.press("3")
        await wait_for(pilot, lambda: app.focused is not None and app.focused.id == "tpl-preview")
        await pilot.press("4")
        await wait_for(pilot, lambda: app.focused is not None and app.focused.id == "seed-table")
        editor = screen.query_one("#tpl-conv-gen", TextArea)
        assert editor.text == before and not screen.templates.dirty()
        assert screen.unsaved() == [] and template.read_text() == before


async def test_a_tab_switch_focuses_a_list_or_preview_and_e_goes_into_the_editor(sample_root: Path) -> None:
    app = ConvogenApp(sample_root, "sample", load_model=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await opened(pilot, app)
        await wait_for(pilot, lambda: app.focused is screen.query_one("#tpl-preview"))
        await pilot.press("f2")
        await wait_for(pilot, lambda: app.focused is screen.query_one("#persona-grid", DataTable))
        await pilot.press("e")
        editor = screen.query_one("#setup-editor", TextArea)
        await wait_for(pilot, lambda: app.focused is editor)
        await pilot.press("escape", "3")  # leave the editor, then a digit is a tab again
        await wait_for(pilot, lambda: app.focused is screen.query_one("#tpl-preview"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.focused is screen.query_one("#tpl-conv-gen"))
        assert not screen.unsaved()


async def test_generate_says_what_it_saved_and_ctrl_u_puts_it_back(sample_root: Path) -> None:
    template = expt(sample_root) / "conv-gen.txt"
    before = template.read_text()
    assert "exactly 8 turns" in before
    app = ConvogenApp(sample_root, "sample", load_model=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await opened(pilot, app)
        editor = screen.query_one("#tpl-conv-gen", TextArea)
        editor.load_text(before.replace("exactly 8 turns", "exactly 44 turns"))  # a stray 4 typed
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: any("saved conv-gen.txt:" in m for m in notes(app)))
        said = next(m for m in notes(app) if "saved conv-gen.txt:" in m)
        assert 'saved conv-gen.txt: "exactly 8 turns." -> "exactly 44 turns."' in said and "ctrl+u" in said
        assert "exactly 44 turns" in template.read_text()
        assert backup_path(expt(sample_root), template).read_text() == before
        await wait_for(pilot, lambda: screen.active_pane() == "generate")
        await pilot.press("ctrl+u")
        await wait_for(pilot, lambda: template.read_text() == before)
        await wait_for(pilot, lambda: editor.text == before)
        assert not backup_path(expt(sample_root), template).exists()
        assert any("put back the previous conv-gen.txt" in m for m in notes(app))


def test_a_change_is_summed_up_in_one_line() -> None:
    old = "Write a dialogue.\nWrite exactly 6 turns.\nEnd."
    assert change_summary(old, old.replace("6", "44")) == '"exactly 6 turns." -> "exactly 44 turns."'
    assert change_summary("a\nb\nc", "a\nx\ny\nc\nd") == "+3 lines -1 line"


# help, palette, drop-downs ----------------------------------------------------------------------
async def test_help_opens_at_the_tab_it_was_asked_from_and_lists_drop_down_keys(sample_root: Path) -> None:
    app = ConvogenApp(sample_root, "sample", load_model=False)
    async with app.run_test(size=SIZE) as pilot:
        await opened(pilot, app)
        await pilot.press("f6")
        await wait_for(pilot, lambda: app.focused is not None and app.focused.id == "rev-table")
        await pilot.press("question_mark")
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen) and help_screen.start == "Review (F6)"
        scroll = help_screen.query_one("#help", VerticalScroll)
        section = help_screen.start_section()
        assert section is not None
        await wait_for(pilot, lambda: scroll.scroll_y == section.virtual_region.y > 0)
        sections = dict(app.key_sections())
        assert ("v", sections["Review (F6)"][-2][1]) == sections["Review (F6)"][-2]
        assert any(key == "p" for key, _ in sections["Generate (F5)"])
        assert any("drop-down" in what for _, what in sections["Generate (F5)"])
        await pilot.press("escape")
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, ExperimentsScreen))
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen) and app.screen.start == "Experiments"


async def test_drop_downs_open_with_their_own_key(sample_root: Path) -> None:
    app = ConvogenApp(sample_root, "sample", load_model=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await opened(pilot, app)
        await pilot.press("f5")
        persona = screen.query_one("#gen-persona", Select)
        await wait_for(pilot, lambda: app.focused is screen.query_one("#gen-conv"))
        await pilot.press("p")
        await wait_for(pilot, lambda: persona.expanded)
        await pilot.press("escape", "f6")
        show = screen.query_one("#rev-show", Select)
        await wait_for(pilot, lambda: app.focused is screen.query_one("#rev-table"))
        await pilot.press("v")
        await wait_for(pilot, lambda: show.expanded)
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: show.value != "all" and not show.expanded)


async def test_palette_commands_come_from_the_screen_under_it(sample_root: Path) -> None:
    app = ConvogenApp(sample_root, "sample", load_model=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await opened(pilot, app)
        titles = [c.title for c in commands_for(app, screen)]
        assert "Skip the live conversation" in titles and "Help: all keys" in titles
        assert "New experiment from the sample" not in titles
        await pilot.press("ctrl+p")
        await pilot.press(*"Go to Seeds")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.active_pane() == "seeds")
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, ExperimentsScreen))
        assert "New experiment from the sample" in [c.title for c in commands_for(app, app.screen)]


# the title bar ----------------------------------------------------------------------------------
def test_the_title_bar_keeps_ctx_where_and_threads_whole_at_80_columns() -> None:
    status = "SmolLM2-135M-Instruct-Q8… · ctx 8192 · CPU · 2 threads"
    for title in ("ConvoGen · sample · Stats", "ConvoGen · a-rather-long-experiment-name · Stats"):
        left, right = fit_title(title, status, 80)
        assert right.endswith(" · ctx 8192 · CPU · 2 threads") and right.startswith("SmolLM2")
        assert len(left) + len(right) + 4 <= 80


async def test_the_title_bar_shows_the_model_line_on_every_screen(sample_root: Path) -> None:
    app = ConvogenApp(sample_root, "sample", load_model=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await opened(pilot, app)
        app.set_model_status("SmolLM2-135M-Instruct · ctx 8192 · CPU · 2 threads")
        bar = screen.query_one(TitleBar)
        await wait_for(pilot, lambda: "2 threads" in str(bar.render()))
        assert "ctx 8192 · CPU" in str(bar.render()) and "sample" in str(bar.render())
        await pilot.press("f8")
        await wait_for(pilot, lambda: app.screen is not screen)
        stats_bar = app.screen.query_one(TitleBar)
        await wait_for(pilot, lambda: "2 threads" in str(stats_bar.render()))
        assert "Stats" in str(stats_bar.render())


# a pane on its own --------------------------------------------------------------------------------
class PaneHost(ShellApp):
    """A small app holding one pane, with the scripted backend as the loaded model."""

    def __init__(self, session: Session, pane: type[TemplatesPane | ReviewPane]) -> None:
        super().__init__()
        self.session = session
        self.pane = pane

    def compose(self) -> ComposeResult:
        assert self.session is not None
        yield self.pane(self.session, id="pane")


async def test_templates_pane_counts_the_prompt_with_the_loaded_model(sample_root: Path) -> None:
    session = Session.open(expt(sample_root))
    session.use_backend(ScriptedBackend(n_ctx=2048))
    host = PaneHost(session, TemplatesPane)
    async with host.run_test(size=SIZE) as pilot:
        info = host.query_one("#tpl-info", Static)
        preview = host.query_one("#tpl-preview", TextArea)
        await wait_for(pilot, lambda: "/ 2048 tokens" in str(info.render()))
        editor = host.query_one("#tpl-conv-gen", TextArea)
        editor.move_cursor(editor.document.end)
        editor.insert(" Keep it under forty words.")
        await wait_for(pilot, lambda: "under forty words" in preview.text)
        count = int(str(info.render()).split(" / ")[0])
        assert count == ScriptedBackend().count_tokens(preview.text)


async def test_review_pane_deletes_to_the_trash_and_undo_brings_it_back(sample_root: Path) -> None:
    folder = expt(sample_root)
    for i in range(3):
        fake_conversation(
            folder, f"0000000{i}-conv", f"170000000000000000{i}", ("distrust", "cynical"), 1e9 + i
        )
    session = Session.open(folder)
    session.use_backend(ScriptedBackend())
    host = PaneHost(session, ReviewPane)
    async with host.run_test(size=SIZE) as pilot:
        table = host.query_one("#rev-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        table.focus()
        await pilot.press("d")
        await wait_for(pilot, lambda: table.row_count == 2)
        assert len(list((folder / "conversations").glob("*.json"))) == 2
        assert len(list((folder / "trash").iterdir())) == 1
        await pilot.press("u")
        await wait_for(pilot, lambda: table.row_count == 3)
        assert len(list((folder / "conversations").glob("*.json"))) == 3
        assert len(list((folder / "restyled-conversations").glob("*.json"))) == 3  # twins came back too
