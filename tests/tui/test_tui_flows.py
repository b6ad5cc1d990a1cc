"""The app's flows driven by keys at 80x24, as a user would: open, edit, preview, generate, review."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import DataTable, OptionList, Static, TextArea

from convogen_tui.core.judging.turns import split_turns
from convogen_tui.tui.app import ConvogenApp
from convogen_tui.tui.messages import ModelReady
from convogen_tui.tui.screens.dialogs import HelpScreen
from convogen_tui.tui.screens.experiments import ExperimentsScreen
from convogen_tui.tui.screens.workspace import ExperimentScreen
from convogen_tui.tui.widgets.stream_view import StreamView
from tests import tui_helpers as ui
from tests.scripted import ScriptedBackend
from tests.tui_helpers import sample_root

__all__ = ["sample_root"]  # the fixture, imported for pytest


def expt_dir(root: Path) -> Path:
    return root / "inst-templates" / "sample"


def text_of(app: ConvogenApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def test_split_turns_tells_speakers_apart() -> None:
    blocks = split_turns("(conversation)\nSocBot: hi\nthere\nUser: no\n**SocBot:** ok")
    assert [b[0] for b in blocks] == ["other", "socbot", "user", "socbot"]
    assert blocks[1][1] == "SocBot: hi\nthere\n"


async def test_experiments_screen_lists_sample_and_opens_it(sample_root: Path) -> None:
    ui.fake_conversation(expt_dir(sample_root), "c1", "1", ("distrust", "cynical"), 1_700_000_000.0)
    app = ConvogenApp(sample_root, load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await ui.wait_for(pilot, lambda: isinstance(app.screen, ExperimentsScreen) and bool(app.screen.rows))
        row = app.screen.rows[0]
        assert (row.name, row.ok, row.conversations, row.restyled) == ("sample", True, 1, 1)
        await pilot.press("enter")
        screen = await ui.opened(pilot, app)
        assert screen.session.experiment.name == "sample"
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, ExperimentsScreen)


async def test_new_experiment_from_sample(sample_root: Path) -> None:
    app = ConvogenApp(sample_root, load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await ui.wait_for(pilot, lambda: isinstance(app.screen, ExperimentsScreen) and bool(app.screen.rows))
        await pilot.press("n")
        await pilot.press(*"mine", "enter")
        await ui.wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen))
        new = sample_root / "inst-templates" / "mine"
        assert app.session is not None and app.session.experiment.dir == new
        assert app.session.experiment.ok, app.session.experiment.problems
        setup = json.loads((new / "expt-setup.json").read_text())
        assert "inst-templates/mine/" in setup["user_profiles"][0]["path"]


@pytest.mark.llama
async def test_template_edit_updates_preview_and_token_count(sample_root: Path) -> None:
    async with ui.sample_app(sample_root, load_model=True) as (app, pilot, _screen):
        await ui.wait_for(pilot, lambda: "tokens" in text_of(app, "#tpl-info"))
        before = int(text_of(app, "#tpl-info").split(" / ")[0])
        editor = app.screen.query_one("#tpl-conv-gen", TextArea)
        editor.focus()
        editor.move_cursor(editor.document.end)
        await pilot.press(*" Keep every message under forty words.")
        preview = app.screen.query_one("#tpl-preview", TextArea)
        await ui.wait_for(pilot, lambda: "under forty words" in preview.text)
        await ui.wait_for(pilot, lambda: int(text_of(app, "#tpl-info").split(" / ")[0]) > before)
        assert "4096 tokens" in text_of(app, "#tpl-info")


async def test_placeholder_error_is_named_as_you_type(sample_root: Path) -> None:
    async with ui.sample_app(sample_root) as (app, pilot, _screen):
        assert "loading model" in text_of(app, "#tpl-info") or "model" in text_of(app, "#tpl-info")
        editor = app.screen.query_one("#tpl-conv-gen", TextArea)
        editor.focus()
        editor.move_cursor(editor.document.end)
        await pilot.press(*" {motivaton}")
        await ui.wait_for(pilot, lambda: "{motivaton}" in text_of(app, "#tpl-problems"))
        assert "unknown placeholder" in text_of(app, "#tpl-problems")


@pytest.mark.llama
async def test_generate_streams_then_writes_both_files(tmp_path: Path) -> None:
    root = ui.copy_sample(tmp_path)
    async with ui.sample_app(root, load_model=True, max_tokens=8, seed=7) as (app, pilot, screen):
        chunks: list[str] = []
        conv_view = screen.query_one("#gen-conv", StreamView)
        original = conv_view.append
        conv_view.append = lambda text: (chunks.append(text), original(text))[1]  # type: ignore[method-assign]
        await pilot.press("ctrl+g")
        assert screen.active_pane() == "generate"
        twins_dir = expt_dir(root) / "restyled-conversations"
        await ui.wait_for(
            pilot, lambda: len(list(twins_dir.glob("*.json"))) == 1 and not screen.generate.running, 120
        )
        assert chunks, "no streamed text reached the view"
        convs = list((expt_dir(root) / "conversations").glob("*.json"))
        twins = list((expt_dir(root) / "restyled-conversations").glob("*.json"))
        assert len(convs) == 1 and [t.name for t in twins] == [convs[0].name]
        record = json.loads(convs[0].read_text())
        assert record["conv"].strip() and "".join(chunks).strip() == record["conv"].strip()
        assert "1 conversation(s), 1 restyled" in text_of(app, "#gen-status")
        # rerun: same seed and persona, model still loaded
        backend = app.session.backend  # type: ignore[union-attr]
        await pilot.press("ctrl+r")
        await ui.wait_for(
            pilot, lambda: len(list(twins_dir.glob("*.json"))) == 2 and not screen.generate.running, 120
        )
        assert app.session.backend is backend  # type: ignore[union-attr]
        records = [json.loads(p.read_text()) for p in (expt_dir(root) / "conversations").glob("*.json")]
        assert len(records) == 2
        assert {(r["tweet_id"], json.dumps(r["persona"])) for r in records} == {
            (record["tweet_id"], json.dumps(record["persona"]))
        }


@pytest.mark.llama
async def test_escape_cancels_and_leaves_no_file(tmp_path: Path) -> None:
    root = ui.copy_sample(tmp_path)
    async with ui.sample_app(root, load_model=True, max_tokens=400, seed=7) as (app, pilot, screen):
        await pilot.press("ctrl+g")
        conv_view = screen.query_one("#gen-conv", StreamView)
        await ui.wait_for(pilot, lambda: bool(conv_view.text), 60)
        await pilot.press("escape")
        await ui.wait_for(pilot, lambda: not screen.generate.running, 60)
        assert "cancelled" in text_of(app, "#gen-status")
        assert not list((expt_dir(root) / "conversations").glob("*.json"))
        assert not list((expt_dir(root)).rglob("*.tmp"))


async def test_review_delete_then_undo(sample_root: Path) -> None:
    expt = expt_dir(sample_root)
    for i, persona in enumerate(
        [("distrust", "cynical"), ("belonging", "earnest"), ("attention", "hostile")]
    ):
        ui.fake_conversation(expt, f"c{i}", str(i), persona, 1_700_000_000.0 + i)
    async with ui.sample_app(sample_root) as (app, pilot, screen):
        table = await ui.review_table(pilot, screen, 3)
        first = screen.review.current()
        assert first is not None and first.id == "c2"  # newest first
        await ui.wait_for(pilot, lambda: "point 0" in screen.query_one("#rev-conv", StreamView).text)
        assert "pt 0" in screen.query_one("#rev-restyled", StreamView).text
        table.focus()  # F6's own focus can be lost on a loaded machine (focused None); keys go to the table
        await ui.wait_for(pilot, lambda: app.focused is table)
        await pilot.press("d")
        assert table.row_count == 2
        assert not (expt / "conversations" / "c2.json").exists()
        assert not (expt / "restyled-conversations" / "c2.json").exists()
        await pilot.press("u")
        await ui.wait_for(pilot, lambda: table.row_count == 3)
        assert (expt / "conversations" / "c2.json").exists()
        assert (expt / "restyled-conversations" / "c2.json").exists()
        # marks and filters
        await pilot.press("f")
        assert json.loads((expt / "conversations" / "c2.json").read_text())["review"]["mark"] == "flagged"
        await pilot.press("slash", *"belonging")
        await ui.wait_for(pilot, lambda: table.row_count == 1)
        assert screen.review.current().id == "c1"  # type: ignore[union-attr]


async def test_seeds_search_pick_and_enter_runs_one_seed_keeping_the_picks(sample_root: Path) -> None:
    async with ui.sample_app(sample_root) as (app, pilot, screen):
        app.post_message(ModelReady(ScriptedBackend()))  # the model, loaded
        await pilot.press("f4")
        table = screen.query_one("#seed-table", DataTable)
        await ui.wait_for(pilot, lambda: table.row_count == 20 and app.focused is table)
        await pilot.press("down", "space", "space")  # seeds 2 and 3
        picks = ["1700000000000000002", "1700000000000000003"]
        assert [s.tweet_id for s in screen.session.picked] == picks
        await pilot.press("slash", *"fluoride", "enter")
        await ui.wait_for(pilot, lambda: table.row_count == 1)
        await pilot.press("enter")  # run seed 1 now
        assert screen.active_pane() == "generate"
        convs = expt_dir(sample_root) / "conversations"
        await ui.wait_for(pilot, lambda: not screen.generate.running and any(convs.glob("*.json")))
        (saved,) = [json.loads(p.read_text()) for p in convs.glob("*.json")]
        assert saved["tweet_id"] == "1700000000000000001"
        assert [s.tweet_id for s in screen.session.picked] == picks  # the picks are untouched
        assert "Seeds: 2 picked" in text_of(app, "#gen-plan")


async def test_setup_save_lists_problems_with_key_and_line(sample_root: Path) -> None:
    async with ui.sample_app(sample_root) as (app, pilot, screen):
        await pilot.press("f2")
        editor = screen.query_one("#setup-editor", TextArea)
        grid = screen.query_one("#persona-grid", DataTable)
        assert grid.row_count == 3
        await ui.wait_for(pilot, lambda: app.focused is grid)  # a tab switch never lands in an editor
        await pilot.press("e")
        await ui.wait_for(pilot, lambda: app.focused is editor)  # ctrl+s saves the focused pane's file
        editor.load_text(editor.text.replace('"max_tokens": 1444', '"max_tokens": -5'))
        line = 1 + next(i for i, text in enumerate(editor.text.splitlines()) if '"max_tokens"' in text)
        await pilot.press("ctrl+s")
        problems = screen.query_one("#setup-problems", OptionList)
        lines = [str(problems.get_option_at_index(i).prompt) for i in range(problems.option_count)]
        assert any("sampling.max_tokens" in text and f"line {line}" in text for text in lines), lines


async def test_help_lists_every_screen_key(sample_root: Path) -> None:
    async with ui.sample_app(sample_root) as (app, pilot, _screen):
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        keys = [k for _, section in app.key_sections() for k, _d in section]
        for key in ("ctrl+g", "ctrl+r", "Esc", "ctrl+s", "ctrl+t", "space", "d", "u", "F9", "?/F1"):
            assert any(key in k for k in keys), key
        for key in ("[", "]", "/", "s", "o", "r", "ctrl+l"):
            assert key in keys, key
        raw = ("left_square_bracket", "right_square_bracket", "slash", "question_mark", "escape")
        assert not [k for k in keys if any(name in k for name in raw)]
        await pilot.press("escape")
        assert isinstance(app.screen, ExperimentScreen)
        await pilot.press("e")  # into the template editor
        await pilot.press("question_mark")  # in the template editor, ? is just typed
        assert isinstance(app.screen, ExperimentScreen)
        await pilot.press("escape")  # leave the editor: now ? is help (F-keys get lost over SSH)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, ExperimentScreen)


@pytest.mark.llama
async def test_model_error_is_a_notification_with_what_to_do(sample_root: Path) -> None:
    async with ui.missing_model_app(sample_root) as (app, pilot):
        messages = ui.notes(app)
        assert any("missing.gguf" in m and "What to do" in m for m in messages), messages
        await pilot.press("ctrl+g")  # the app lives on and says why nothing runs
        assert not app.screen.generate.running  # type: ignore[attr-defined]


async def test_persona_grid_opens_the_texts_for_editing(sample_root: Path) -> None:
    async with ui.sample_app(sample_root) as (app, pilot, screen):
        await ui.open_persona_text(pilot, screen, 0, 1)  # distrust x sarcastic
        area = app.screen.query_one("#persona-text-1", TextArea)
        assert "mockery" in area.text
        area.load_text("Short and sarcastic.")
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, ExperimentScreen)
        path = expt_dir(sample_root) / "dispositions" / "sarcastic.txt"
        assert path.read_text() == "Short and sarcastic."
