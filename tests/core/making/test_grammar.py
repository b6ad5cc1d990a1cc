"""The grammars derived from a setup, the pipeline that attaches them, and what check says of them.

The grammar texts are held to their form here; tests/test_grammar_llama.py runs them through
llama.cpp's own grammar matcher and the embedded model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.judging.quality import QualitySettings, ResolvedQuality
from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.core.making.check import check_experiment
from convogen_tui.core.making.experiment import load_experiment
from convogen_tui.core.making.grammar import (
    CHARS_PER_TOKEN,
    END_TOKENS,
    LABEL_TOKENS,
    dialog_shape,
    grammar_in_force,
    message_cap,
    restyle_shape,
)
from convogen_tui.core.making.pipeline import Pipeline
from convogen_tui.core.making.seeds import Seed
from tests.scripted import Script, ScriptedBackend
from tests.tui_helpers import sample_root, wait_for

__all__ = ["sample_root"]  # the fixture, imported for pytest

FOUR = "SocBot: one.\nUser: two.\nSocBot: three.\nUser: four."


def _rule(gbnf: str, name: str) -> str:
    return next(line for line in gbnf.splitlines() if line.startswith(f"{name} ::= "))


@pytest.mark.parametrize("turns", [4, 8, 12])
def test_dialog_grammar_has_exactly_the_turn_target_socbot_first(turns: int):
    shape = dialog_shape(ResolvedQuality(turns=turns), max_tokens=1444)
    gbnf = shape.gbnf()
    assert _rule(gbnf, "root") == f'root ::= (socbot "\\n" user "\\n"){{{turns - 1}}} socbot "\\n" user'
    assert _rule(gbnf, "socbot") == 'socbot ::= "SocBot: " text'
    assert _rule(gbnf, "user") == 'user ::= "User: " text'
    cap = message_cap(1444, 2 * turns)
    assert _rule(gbnf, "text") == f"text ::= first (middle{{0,{cap - 2}}} last)?"
    assert shape.summary() == f"constrained: {turns} turns, SocBot first, <= {cap} chars a message"
    # the whole dialog fits max_tokens at CHARS_PER_TOKEN characters a token
    assert 2 * turns * (cap / CHARS_PER_TOKEN + LABEL_TOKENS) + END_TOKENS <= 1444
    assert "post" not in gbnf  # nothing before the first line


def test_fewer_tokens_mean_shorter_messages_and_too_few_is_a_clear_error():
    assert message_cap(700, 16) < message_cap(1444, 16)
    with pytest.raises(ConvogenError) as caught:
        dialog_shape(ResolvedQuality(turns=8), max_tokens=150)
    message = str(caught.value)
    assert "max_tokens 150" in message and "--no-constrain" in message and "16 messages" in message


def test_restyle_grammar_keeps_the_conversations_speakers_with_an_optional_post():
    quality = ResolvedQuality()
    conv = "SocBot: hi there.\nUser: no.\nSocBot: why?\nUser: because.\nUser: and more."
    shape = restyle_shape(conv, quality, 1444)
    assert shape is not None
    gbnf = shape.gbnf()
    assert _rule(gbnf, "root") == (
        'root ::= post? socbot "\\n" user "\\n" socbot "\\n" user "\\n" user'
    )  # the speakers as written, even a doubled User
    assert _rule(gbnf, "post") == 'post ::= "User: " text "\\n\\n"'  # the prompt's blank line
    assert shape.max_chars == quality.max_message_chars == 280  # the rule's threshold binds


def test_restyle_grammar_separates_messages_as_the_conversation_does():
    spaced = "SocBot: a.\n\nUser: b.\n\nSocBot: c.\n\nUser: d."
    shape = restyle_shape(spaced, ResolvedQuality(), 1444)
    assert shape is not None
    assert _rule(shape.gbnf(), "root") == (
        'root ::= post? socbot "\\n\\n" user "\\n\\n" socbot "\\n\\n" user'
    )


def test_restyle_cap_fits_max_tokens_when_280_would_not():
    shape = restyle_shape(FOUR, ResolvedQuality(max_message_chars=280), 200)
    assert shape is not None and shape.max_chars == message_cap(200, 5) < 280


def test_a_conversation_without_dialog_gets_no_restyle_grammar():
    assert restyle_shape("Here is a story about the weather.", ResolvedQuality(), 1444) is None


# the turn target is the quality rules' ------------------------------------------------------
def test_turn_target_comes_from_the_template_or_the_quality_block():
    from_template = QualitySettings().resolve("Write exactly 12 turns.", "")
    assert grammar_in_force(from_template, 1444).dialog.turns == 12
    from_setup = QualitySettings(turns=4).resolve("Write exactly 12 turns.", "")
    assert grammar_in_force(from_setup, 1444).dialog.turns == 4


# the pipeline -------------------------------------------------------------------------------
def _setup(sample: Path, **changes: object) -> None:
    path = sample / "expt-setup.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _run(sample: Path, backend: ScriptedBackend, constrain: bool | None = None) -> ConversationStore:
    pipeline = Pipeline(load_experiment(sample), backend, constrain=constrain)
    jobs = pipeline.plan([Seed("1", "The moon landing was staged.")], seed=3).jobs
    list(pipeline.run(jobs, restyle=True))
    return pipeline.store


def _records(sample: Path, folder: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((sample / folder).glob("*.json"))]


def test_generate_and_restyle_requests_carry_their_grammars_and_provenance_says_so(sample: Path):
    backend = ScriptedBackend([Script(FOUR), Script(FOUR)], constraint_support="grammar")
    _setup(sample, quality={"turns": 2})
    _run(sample, backend)
    dialog, restyle = backend.constraints
    assert dialog is not None and restyle is not None
    assert (dialog.name, restyle.name) == ("dialog", "restyle")
    assert '{1} socbot "\\n" user' in dialog.gbnf  # 2 turns
    assert 'post? socbot "\\n" user "\\n" socbot "\\n" user\n' in restyle.gbnf  # the saved speakers
    conv = _records(sample, "conversations")[0]["provenance"]
    twin = _records(sample, "restyled-conversations")[0]["provenance"]
    assert conv["constrained"] is True and conv["grammar_sha256"] == dialog.sha256
    assert twin["constrained"] is True and twin["grammar_sha256"] == restyle.sha256


@pytest.mark.parametrize("how", ["setup", "argument", "backend"])
def test_no_grammar_when_turned_off_or_the_backend_cannot(sample: Path, how: str):
    backend = ScriptedBackend(constraint_support="" if how == "backend" else "grammar")
    if how == "setup":
        _setup(sample, constrain=False)
    _run(sample, backend, constrain=False if how == "argument" else None)
    assert backend.constraints == [None, None]
    conv = _records(sample, "conversations")[0]["provenance"]
    assert conv["constrained"] is False and conv["grammar_sha256"] is None


def test_old_records_without_the_fields_still_read(sample: Path):
    _run(sample, ScriptedBackend())
    path = next((sample / "conversations").glob("*.json"))
    data = json.loads(path.read_text())
    del data["provenance"]["constrained"], data["provenance"]["grammar_sha256"]
    path.write_text(json.dumps(data))
    record, _ = ConversationStore(sample).load(path.stem)
    assert record.provenance is not None and record.provenance.constrained is None


# check --------------------------------------------------------------------------------------
def test_check_reports_a_template_asking_6_turns_against_a_target_of_8(sample: Path, cli):
    template = sample / "conv-gen.txt"
    template.write_text(template.read_text().replace("exactly 8 turns", "exactly 6 turns"))
    _setup(sample, quality={"turns": 8})
    report = check_experiment(load_experiment(sample))
    [warning] = [p for p in report.problems if "turn target" in p.message]
    assert warning.file == template and warning.severity == "warning"
    line = next(i for i, text in enumerate(template.read_text().splitlines(), 1) if "6 turns" in text)
    assert warning.line == line and '"6 turns"' in warning.message and "8" in warning.message
    assert report.ok  # a warning: the run still goes (with 8 turns)
    code, out, _ = cli("check", sample, "--grammar")
    assert code == 0
    assert f"conv-gen.txt:{line}" in out and '"6 turns"' in out
    assert "grammar: constrained: 8 turns, SocBot first" in out
    assert re.search(r'^root ::= \(socbot "\\n" user "\\n"\)\{7\} socbot', out, re.M)


def test_check_says_when_max_tokens_cannot_hold_the_grammar_or_it_is_off(sample: Path, cli):
    _setup(sample, sampling={"max_tokens": 100})
    code, out, _ = cli("check", sample)
    assert code == 0 and "warning:" in out and "expt-setup.json" in out
    assert "max_tokens 100" in out and "a run goes unconstrained" in out
    _setup(sample, constrain=False)
    code, out, _ = cli("check", sample)
    assert code == 0 and 'grammar: off ("constrain": false' in out


# the Templates screen -------------------------------------------------------------------------
async def test_templates_screen_shows_the_grammar_and_a_disagreeing_turn_count(sample_root: Path) -> None:
    from textual.widgets import Static, TextArea

    from convogen_tui.tui.app import ConvogenApp
    from tests.tui_helpers import opened

    expt = sample_root / "inst-templates" / "sample"
    _setup(expt, quality={"turns": 8})
    app = ConvogenApp(sample_root, "sample", load_model=False)

    def text(selector: str) -> str:
        return str(app.screen.query_one(selector, Static).render())

    async with app.run_test(size=(80, 24)) as pilot:
        await opened(pilot, app)
        await wait_for(pilot, lambda: "grammar: 8 turns · ≤170 chars/message" in text("#tpl-info"))
        assert "turn target" not in text("#tpl-problems")
        editor = app.screen.query_one("#tpl-conv-gen", TextArea)
        editor.load_text(editor.text.replace("exactly 8 turns", "exactly 6 turns"))
        await wait_for(pilot, lambda: '"6 turns", but the turn target is 8' in text("#tpl-problems"))
        line = next(i for i, t in enumerate(editor.text.splitlines(), 1) if "6 turns" in t)
        assert f"line {line}" in text("#tpl-problems")
