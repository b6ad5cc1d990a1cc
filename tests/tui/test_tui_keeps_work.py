"""The app keeps the user's work and stays in step with the disk (issue 13), driven by keys at 80x24.

No model: runs use tests/scripted.py's backend, handed to the app the way a loaded model arrives
(a ModelReady message), with gates so nothing depends on timing. Changes "from elsewhere" are real:
files written beside the app, and `convogen mark` run as another process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from textual.widgets import DataTable, OptionList, Static, TextArea

from convogen_tui.core.keeping.picks import load_picks
from convogen_tui.core.making.check import check_experiment
from convogen_tui.core.making.experiment import load_experiment
from convogen_tui.llm.loader import resolve_experiment_model
from convogen_tui.tui.app import ConvogenApp
from convogen_tui.tui.messages import ModelReady
from convogen_tui.tui.screens.choice import ChoiceDialog, DiffDialog
from convogen_tui.tui.screens.dialogs import AskDialog, PersonaDialog
from convogen_tui.tui.screens.experiments import ExperimentsScreen
from convogen_tui.tui.screens.workspace import ExperimentScreen
from convogen_tui.tui.widgets.stream_view import StreamView
from tests import tui_helpers as ui
from tests.scripted import Script, ScriptedBatchBackend
from tests.tui_helpers import sample_root

__all__ = ["sample_root"]

SIZE = (80, 24)


def expt_dir(root: Path) -> Path:
    return root / "inst-templates" / "sample"


def text_of(app: ConvogenApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def type_in_template(pilot, screen: ExperimentScreen, text: str) -> TextArea:  # type: ignore[no-untyped-def]
    editor = screen.query_one("#tpl-conv-gen", TextArea)
    editor.focus()
    editor.move_cursor(editor.document.end)
    await pilot.press(*text)
    return editor


# nothing lost ---------------------------------------------------------------------------------
async def test_quit_with_an_unsaved_template_edit_asks_save_discard_or_cancel(sample_root: Path) -> None:
    template = expt_dir(sample_root) / "conv-gen.txt"
    original = template.read_text()
    async with ui.sample_app(sample_root) as (app, pilot, screen):
        editor = await type_in_template(pilot, screen, " Be brief.")
        assert editor.border_title == "conv-gen.txt ●"
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, ChoiceDialog)
        assert "conv-gen.txt" in app.screen.question
        await pilot.press("escape")  # cancel: back to editing, nothing written or lost
        assert app.screen is screen and editor.text.endswith(" Be brief.")
        assert template.read_text() == original
        await pilot.press("ctrl+o")  # closing the experiment asks too
        assert isinstance(app.screen, ChoiceDialog)
        await pilot.press("s")  # save, then close
        await ui.wait_for(pilot, lambda: isinstance(app.screen, ExperimentsScreen))
        assert template.read_text() == original + " Be brief."
        await pilot.press("enter")  # open it again, edit, quit and discard
        screen = await ui.opened(pilot, app)
        await type_in_template(pilot, screen, " Or not.")
        await pilot.press("ctrl+q")
        await pilot.press("d")
    assert app.return_code == 0
    assert template.read_text() == original + " Be brief."


async def test_unsaved_setup_and_persona_edits_ask_too(sample_root: Path) -> None:
    setup = expt_dir(sample_root) / "expt-setup.json"
    sarcastic = expt_dir(sample_root) / "dispositions" / "sarcastic.txt"
    before = sarcastic.read_text()
    async with ui.sample_app(sample_root) as (app, pilot, screen):
        await ui.open_persona_text(pilot, screen, 0, 1)  # distrust x sarcastic
        assert isinstance(app.screen, PersonaDialog)
        area = app.screen.query_one("#persona-text-1", TextArea)
        area.focus()
        await pilot.press("end", *" Very dry.")
        await pilot.press("escape")  # close with an unsaved edit: asked first
        assert isinstance(app.screen, ChoiceDialog)
        await pilot.press("escape")
        assert isinstance(app.screen, PersonaDialog) and "Very dry." in area.text
        await pilot.press("ctrl+q")  # quitting asks about the persona text too
        assert isinstance(app.screen, ChoiceDialog) and "sarcastic.txt" in app.screen.question
        await pilot.press("escape")
        await pilot.press("escape")
        await pilot.press("d")  # discard and close the dialog
        assert app.screen is screen and sarcastic.read_text() == before
        editor = screen.query_one("#setup-editor", TextArea)
        editor.focus()
        editor.move_cursor((0, 1))
        await pilot.press("enter")
        assert editor.border_title == "expt-setup.json ●"
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, ChoiceDialog) and "expt-setup.json" in app.screen.question
        await pilot.press("d")
        await ui.wait_for(pilot, lambda: isinstance(app.screen, ExperimentsScreen))
    assert json.loads(setup.read_text())["llm"] == "default"


# in step with the disk ------------------------------------------------------------------------
async def test_a_template_changed_on_disk_reloads_when_not_edited_here(sample_root: Path) -> None:
    template = expt_dir(sample_root) / "conv-gen.txt"
    async with ui.sample_app(sample_root) as (app, pilot, screen):
        editor = screen.query_one("#tpl-conv-gen", TextArea)
        template.write_text(template.read_text() + "\nKeep it short.\n")  # sed, git pull, a 2nd app
        await ui.wait_for(pilot, lambda: editor.text.endswith("Keep it short.\n"))
        assert editor.border_title == "conv-gen.txt"  # in step: nothing unsaved
        assert any("changed on disk: reloaded" in m for m in ui.notes(app))


async def test_a_save_never_overwrites_a_newer_file_unasked(sample_root: Path) -> None:
    template = expt_dir(sample_root) / "conv-gen.txt"
    original = template.read_text()
    async with ui.sample_app(sample_root) as (app, pilot, screen):
        editor = await type_in_template(pilot, screen, " Mine.")
        template.write_text(original + " Theirs.")
        await ui.wait_for(pilot, lambda: any("unsaved edits here" in m for m in ui.notes(app)))
        assert editor.text == original + " Mine."  # our edit stays
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, ChoiceDialog) and "changed on disk" in app.screen.question
        await pilot.press("d")  # show the diff
        assert isinstance(app.screen, DiffDialog)
        diff = app.screen.diff.splitlines()
        assert diff[:2] == ["--- conv-gen.txt (on disk)", "+++ conv-gen.txt (here)"]
        assert "- Theirs." in diff and "+ Mine." in diff
        await pilot.press("escape")  # back to the choice
        assert isinstance(app.screen, ChoiceDialog)
        await pilot.press("escape")  # cancel: nothing written
        assert template.read_text() == original + " Theirs."
        await pilot.press("ctrl+s", "o")  # overwrite, asked
        assert template.read_text() == original + " Mine."
        assert editor.border_title == "conv-gen.txt"
        # the other answer: reload takes the disk's text, and ctrl+z brings ours back
        await pilot.press(*" Again.")
        template.write_text(original + " Newer.")
        await pilot.press("ctrl+s", "r")
        assert editor.text == original + " Newer." and template.read_text() == original + " Newer."
        await pilot.press("ctrl+z")
        assert editor.text.endswith(" Again.")


async def test_review_follows_a_cli_mark_new_deleted_and_restyled_conversations(sample_root: Path) -> None:
    expt = expt_dir(sample_root)
    ui.fake_conversation(
        expt, "c0", "1700000000000000001", ("distrust", "cynical"), 1_700_000_000.0, twin=False
    )
    ui.fake_conversation(expt, "c1", "1700000000000000002", ("belonging", "earnest"), 1_700_000_060.0)
    async with ui.sample_app(sample_root) as (app, pilot, screen):
        table = await ui.review_table(pilot, screen, 2)
        review = screen.review

        def row(conv_id: str):  # type: ignore[no-untyped-def]
            return next(r for r in review.rows if r.id == conv_id)

        # another process marks c1: the row (and the detail's title) follow within a poll or two
        env = {**os.environ, "PYTHONPATH": str(ui.REPO)}
        mark = ["mark", "sample", "c1", "flagged", "--root", str(sample_root)]
        marked = subprocess.run(
            [sys.executable, "-m", "convogen_tui", *mark],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert marked.returncode == 0, marked.stderr
        await ui.wait_for(pilot, lambda: row("c1").mark == "flagged")
        assert "flagged" in " ".join(str(c) for c in table.get_row_at(0))
        # a restyle finished elsewhere: the row turns restyled
        assert not row("c0").restyled
        twin = {"tweet_id": "1700000000000000001", "restyled_conv": "SocBot: 🧵\nUser: no"}
        (expt / "restyled-conversations" / "c0.json").write_text(json.dumps(twin))
        await ui.wait_for(pilot, lambda: row("c0").restyled)
        # a new conversation from another run, and one deleted elsewhere
        ui.fake_conversation(expt, "c2", "1700000000000000003", ("attention", "hostile"), 1_700_000_120.0)
        (expt / "conversations" / "c1.json").unlink()
        await ui.wait_for(pilot, lambda: {r.id for r in review.rows} == {"c0", "c2"})
        assert "2 of 2 conversations" in text_of(app, "#rev-status")
        # r lists again on demand
        await pilot.press("r")
        await ui.wait_for(pilot, lambda: table.row_count == 2)


async def test_experiments_counts_follow_the_disk(sample_root: Path) -> None:
    expt = expt_dir(sample_root)
    app = ConvogenApp(sample_root, load_model=False)
    async with app.run_test(size=SIZE) as pilot:
        await ui.wait_for(pilot, lambda: isinstance(app.screen, ExperimentsScreen) and bool(app.screen.rows))
        screen = app.screen
        assert isinstance(screen, ExperimentsScreen)
        assert screen.rows[0].conversations == 0
        ui.fake_conversation(expt, "c0", "1", ("distrust", "cynical"), 1_700_000_000.0)
        await ui.wait_for(pilot, lambda: screen.rows[0].conversations == 1 and screen.rows[0].restyled == 1)
        assert screen.query_one(DataTable).get_row_at(0)[2] == "1"


# one truth for validation ------------------------------------------------------------------------
async def test_setup_problems_are_those_of_convogen_check(sample_root: Path) -> None:
    setup = expt_dir(sample_root) / "expt-setup.json"
    async with ui.sample_app(sample_root) as (app, pilot, screen):
        await pilot.press("f2")
        editor = screen.query_one("#setup-editor", TextArea)
        problems = screen.query_one("#setup-problems", OptionList)
        await ui.wait_for(pilot, lambda: "valid" in str(problems.get_option_at_index(0).prompt))
        await pilot.press("e")
        await ui.wait_for(pilot, lambda: app.focused is editor)  # e (after F2) puts the cursor in the editor
        editor.load_text(editor.text.replace('"llm": "default"', '"llm": "defaultX"'))
        await pilot.press("ctrl+s")
        await ui.wait_for(pilot, lambda: problems.border_title == "Problems (1)")
        shown = str(problems.get_option_at_index(0).prompt)
        report = check_experiment(load_experiment(setup.parent), resolve_model=resolve_experiment_model)
        (cli_problem,) = report.errors
        assert cli_problem.message in shown and "defaultX" in shown
        assert f"line {cli_problem.line}, llm" in shown
        assert not any("setup is valid" in m for m in ui.notes(app))
        # ctrl+l, from any tab, lands on that first problem; Enter jumps to its line
        await pilot.press("f3")
        await pilot.press("ctrl+l")
        await ui.wait_for(pilot, lambda: app.focused is problems)
        assert problems.highlighted == 0
        await pilot.press("enter")
        assert app.focused is editor and editor.cursor_location[0] == cli_problem.line - 1  # type: ignore[operator]


# picks are sacred -------------------------------------------------------------------------------
async def test_random_picks_add_or_replace_and_are_remembered_across_restarts(sample_root: Path) -> None:
    async with ui.sample_app(sample_root) as (app, pilot, screen):
        await pilot.press("f4")
        table = screen.query_one("#seed-table", DataTable)
        await ui.wait_for(pilot, lambda: table.row_count == 20 and app.focused is table)
        await pilot.press("space")  # seed 1
        await pilot.press("n")
        assert isinstance(app.screen, AskDialog)
        await pilot.press("backspace", "3", "enter")
        assert isinstance(app.screen, ChoiceDialog)  # picks exist: add or replace?
        await pilot.press("a")
        picked = [s.tweet_id for s in screen.session.picked]
        assert len(picked) == 4 and picked[0] == "1700000000000000001" and len(set(picked)) == 4
        await pilot.press("n", "backspace", "2", "enter", "r")  # replace them with 2
        assert len(screen.session.picked) == 2
        kept = [s.tweet_id for s in screen.session.picked]
        await pilot.press("f5")
        await pilot.press("tab")
    assert load_picks(expt_dir(sample_root)).picked == kept
    again = ConvogenApp(sample_root, "sample", load_model=False)
    async with again.run_test(size=SIZE) as pilot:
        screen = await ui.opened(pilot, again)
        await pilot.press("f4")
        table = screen.query_one("#seed-table", DataTable)
        await ui.wait_for(pilot, lambda: table.row_count == 20 and again.focused is table)
        assert [s.tweet_id for s in screen.session.picked] == kept
        assert sum(1 for i in range(20) if table.get_row_at(i)[0] == "✓") == 2
        assert "Seeds: 2 picked" in text_of(again, "#gen-plan")


# run control -------------------------------------------------------------------------------------
async def test_skip_one_stream_while_the_other_goes_on(sample_root: Path) -> None:
    first_gate, second_gate = threading.Event(), threading.Event()
    backend = ScriptedBatchBackend(
        [Script(hold_after=2, gate=first_gate), Script(hold_after=2, gate=second_gate)], slots=2
    )
    async with ui.sample_app(sample_root) as (app, pilot, screen):
        app.post_message(ModelReady(backend))
        await ui.wait_for(pilot, lambda: screen.session.backend is backend)
        await pilot.press("f4")
        table = screen.query_one("#seed-table", DataTable)
        await ui.wait_for(pilot, lambda: table.row_count == 20 and app.focused is table)
        await pilot.press("space", "space")
        await pilot.press("ctrl+g")
        pane = screen.generate
        both_held = lambda: len(pane.streams) == 2 and all(s.tokens == 2 for s in pane.streams.values())  # noqa: E731
        await ui.wait_for(pilot, both_held)
        live = pane.streams[pane.live]  # type: ignore[index]
        assert live.number == 1  # the first is shown, and stays while the second one runs
        assert "2 running" in text_of(app, "#gen-status") and "s skip" in text_of(app, "#gen-status")
        await pilot.press("s")
        second_gate.set()  # the second goes on (and is restyled); the skipped one writes nothing
        await ui.wait_for(pilot, lambda: not pane.running)
        status = text_of(app, "#gen-status")
        assert "1 conversation(s), 1 restyled, 0 failed, 1 skipped" in status, status
        saved = [json.loads(p.read_text()) for p in (expt_dir(sample_root) / "conversations").glob("*.json")]
        assert [r["tweet_id"] for r in saved] == ["1700000000000000002"]
        assert len(list((expt_dir(sample_root) / "restyled-conversations").glob("*.json"))) == 1


async def test_each_job_says_what_it_waits_for_model_load_then_prompt(sample_root: Path) -> None:
    gate = threading.Event()
    backend = ScriptedBatchBackend([Script(prompt_steps=2, hold_after=0, gate=gate)])
    async with ui.sample_app(sample_root) as (app, pilot, screen):
        app.model_loading = True  # as while the app loads a model in the background
        app.set_model_status("loading model…")
        await pilot.press("ctrl+g")
        pane = screen.generate
        assert pane.waiting is not None
        assert "waits for the model to load" in text_of(app, "#gen-status")
        app.post_message(ModelReady(backend))  # the model is there: the run starts by itself
        await ui.wait_for(pilot, lambda: "reading prompt" in text_of(app, "#gen-status"))
        stream = next(iter(pane.streams.values()))
        half = f"reading prompt {stream.prompt_tokens // 2}/{stream.prompt_tokens}"
        assert half in text_of(app, "#gen-status")
        gate.set()
        await ui.wait_for(pilot, lambda: not pane.running)
        assert "1 conversation(s), 1 restyled" in text_of(app, "#gen-status")
        assert screen.query_one("#gen-conv", StreamView).text


# keys -------------------------------------------------------------------------------------------
async def test_lists_move_with_j_and_k_and_o_keeps(sample_root: Path) -> None:
    expt = expt_dir(sample_root)
    ui.fake_conversations(expt, 3)
    async with ui.sample_app(sample_root) as (_app, pilot, screen):
        table = await ui.review_table(pilot, screen, 3)
        await pilot.press("j", "j")
        assert table.cursor_row == 2
        await pilot.press("k")
        assert table.cursor_row == 1 and screen.review.current().id == "c1"  # type: ignore[union-attr]
        await pilot.press("o")
        assert json.loads((expt / "conversations" / "c1.json").read_text())["review"]["mark"] == "kept"
        await pilot.press("4")  # the tab's digit, for terminals that swallow F-keys
        assert screen.active_pane() == "seeds"


async def test_a_failing_worker_is_reported_once_and_the_app_lives_on(sample_root: Path) -> None:
    (expt_dir(sample_root) / "conversations").write_text("not a folder")
    async with ui.sample_app(sample_root) as (app, pilot, screen):
        titles = lambda: [n.title for n in app._notifications]  # noqa: E731
        await ui.wait_for(pilot, lambda: "listing conversations failed" in titles())
        await pilot.press("f6")
        assert app.is_running and screen.active_pane() == "review"
