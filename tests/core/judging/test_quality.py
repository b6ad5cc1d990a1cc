"""Quality rules on hand-written conversations with known defects (tests/data/quality/cases): every
defective one is flagged with its rule, the clean ones (bold, numbered, headed, multi-line, Spanish,
emoji) stay clean. Also: thresholds from the setup and the templates, near-duplicates, diversity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from convogen_tui.core.judging.dialog import dialog_words, parse_dialog
from convogen_tui.core.judging.diversity import diversity_of, mtld
from convogen_tui.core.judging.neardup import minhash
from convogen_tui.core.judging.quality import RULE_NAMES, QualitySettings, check_conversation
from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.core.making.experiment import load_experiment

DATA = Path(__file__).parents[2] / "data" / "quality"
CASES = sorted((DATA / "cases").glob("*.json"))


def load_case(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def install(expt: Path, paths: list[Path]) -> dict[str, dict]:
    """Write cases into an experiment as the store keeps them (conversation + twin, same name)."""
    (expt / "conversations").mkdir(exist_ok=True)
    (expt / "restyled-conversations").mkdir(exist_ok=True)
    cases = {}
    for path in paths:
        case = load_case(path)
        cases[path.stem] = case
        (expt / "conversations" / path.name).write_text(json.dumps(case["conversation"]), encoding="utf-8")
        if case.get("restyled"):
            twin = json.dumps(case["restyled"])
            (expt / "restyled-conversations" / path.name).write_text(twin, encoding="utf-8")
    return cases


def test_the_case_set_has_every_defect_and_clean_conversations() -> None:
    expected = {rule for path in CASES for rule in load_case(path)["expect"]}
    assert expected == set(RULE_NAMES) - {"near-duplicate"}  # that one needs two files: see below
    assert sum(1 for path in CASES if not load_case(path)["expect"]) >= 8


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_each_case_gets_exactly_its_verdicts(path: Path) -> None:
    case = load_case(path)
    conv, twin = case["conversation"], case.get("restyled")
    verdicts = check_conversation(
        conv["conv"],
        twin["restyled_conv"] if twin else None,
        finish_reason=conv["provenance"].get("finish_reason"),
    )
    assert [v.rule for v in verdicts] == case["expect"], [str(v) for v in verdicts]
    for verdict in verdicts:
        assert verdict.detail  # each flag says why, for the reviewer


def test_in_an_experiment_defects_are_flagged_and_clean_ones_stay_clean(
    cli, sample: Path, datasets: Path
) -> None:
    cases = install(sample, CASES)
    code, out, err = cli("show", "sample", "--root", datasets, "--json")
    assert code == 0, err
    rows = {row["id"]: row for row in map(json.loads, out.splitlines())}
    assert set(rows) == set(cases)
    for name, case in cases.items():
        row = rows[name]
        assert set(row) >= {"id", "tweet_id", "persona", "turns", "flags", "mark", "restyled"}
        if case["expect"]:
            assert set(case["expect"]) <= set(row["flags"]), name
        else:
            assert row["flags"] == [], name  # also not a near-duplicate of a defective copy of itself
    assert rows["clean-no-twin-moon"]["restyled"] is False
    code, out, _ = cli("show", "sample", "here-is", "--root", datasets)
    assert "wrapper: before the dialog" in out and "Here is the conversation" in out


def test_the_later_of_two_near_identical_conversations_points_at_the_earlier(cli, sample, datasets) -> None:
    install(sample, sorted((DATA / "near-duplicates").glob("*.json")))
    rows = {r.id: r for r in ConversationStore(sample).list()}
    later, earlier = rows["near-duplicate-second"], rows["near-duplicate-first"]
    assert "near-duplicate" in later.flags and later.near_duplicate_of == "near-duplicate-first"
    assert earlier.flags == [] and earlier.near_duplicate_of == ""
    _, out, _ = cli("show", "sample", "near-duplicate-second", "--root", datasets)
    assert "near-duplicate: nearly the same as near-duplicate-first" in out


def test_a_clean_conversation_is_kept_over_an_earlier_defective_copy(sample: Path) -> None:
    install(sample, [DATA / "cases" / "clean-plain-fluoride.json", DATA / "cases" / "as-an-ai-inside.json"])
    clean = sample / "conversations" / "clean-plain-fluoride.json"
    record = json.loads(clean.read_text())
    record["provenance"]["created_at"] = 1_800_000_000.0  # written after its defective copy
    clean.write_text(json.dumps(record))
    rows = {r.id: r for r in ConversationStore(sample).list()}
    assert rows["clean-plain-fluoride"].flags == []
    assert rows["as-an-ai-inside"].flags == ["wrapper", "near-duplicate"]
    assert rows["as-an-ai-inside"].near_duplicate_of == "clean-plain-fluoride"


def test_thresholds_come_from_the_templates_and_the_setup(sample: Path) -> None:
    install(sample, [DATA / "cases" / "four-turns.json", DATA / "cases" / "restyled-700-characters.json"])
    assert {r.id: r.flags for r in ConversationStore(sample).list()} == {
        "four-turns": ["short"],
        "restyled-700-characters": ["restyle-too-long"],
    }
    template = sample / "conv-gen.txt"
    template.write_text(template.read_text().replace("exactly 8 turns", "exactly 4 turns"))
    restyle = sample / "conv-restyle.txt"
    restyle.write_text(restyle.read_text().replace("280 characters", "1000 characters"))
    store = ConversationStore(sample)
    assert (store.quality.turns, store.quality.max_message_chars) == (4, 1000)
    flags = {r.id: r.flags for r in store.list()}  # the index holds old verdicts: they must be redone
    assert flags["four-turns"] == [] and flags["restyled-700-characters"] == ["extra-turns"]
    setup = json.loads((sample / "expt-setup.json").read_text())
    setup["quality"] = {
        "turns": 8,
        "min_turns": 4,
        "max_message_chars": 280,
        "disabled": ["restyle-too-long"],
    }
    (sample / "expt-setup.json").write_text(json.dumps(setup, indent=2))
    assert load_experiment(sample).ok
    assert {r.id: r.flags for r in ConversationStore(sample).list()} == {
        "four-turns": [],
        "restyled-700-characters": [],
    }


def test_a_wrong_quality_key_is_reported_with_its_line(sample: Path) -> None:
    setup = json.loads((sample / "expt-setup.json").read_text())
    setup["quality"] = {"turnz": 8, "disabled": ["no-such-rule"]}
    (sample / "expt-setup.json").write_text(json.dumps(setup, indent=2))
    problems = [str(p) for p in load_experiment(sample).errors]
    assert any("[quality.turnz]" in p and "unknown key" in p for p in problems), problems
    assert any("[quality.disabled]" in p and "no-such-rule" in p for p in problems), problems
    assert ConversationStore(sample).quality.turns == 8  # listing still works, with the defaults


def test_quality_rules_are_each_explained(cli, sample: Path, datasets: Path) -> None:
    code, out, _ = cli("quality", "--rules")
    assert code == 0
    for rule in RULE_NAMES:
        assert f"\n{rule} " in f"\n{out}"
    assert "max_message_chars=280" in out and "turns=8" in out
    install(sample, [DATA / "cases" / "user-first.json", DATA / "cases" / "clean-numbered-garlic.json"])
    code, out, _ = cli("quality", "sample", "--root", datasets)
    assert "user-first: line 1: User speaks before SocBot" in out
    assert out.strip().endswith("1 of 2 conversation(s) flagged: user-first 1")


def test_settings_reject_unknown_rules() -> None:
    with pytest.raises(ValueError, match="unknown rule nope"):
        QualitySettings.model_validate({"disabled": ["nope"]})


def test_dialog_reading_accepts_formatting_and_keeps_notes_apart() -> None:
    dialog = parse_dialog(
        "Sure! Here is the dialog:\n\n**SocBot:** Hi there 👋\n\n2. User (annoyed): no\nthanks\n"
        "Turn 2\nSocBot: ok.\n\nI hope this helps!"
    )
    assert dialog.speakers == ["socbot", "user", "socbot"]
    assert [m.text for m in dialog.messages] == ["Hi there 👋", "no\nthanks", "ok."]
    assert dialog.before == "Sure! Here is the dialog:" and dialog.after == "I hope this helps!"
    assert dialog_words("SocBot: Don't panic!\nUser: WHY not") == ["don't", "panic", "why", "not"]


def test_mtld_matches_the_lexicalrichness_reference_on_the_same_words() -> None:
    from lexicalrichness import LexicalRichness

    for path in CASES[:6]:
        tokens = dialog_words(load_case(path)["conversation"]["conv"])
        reference = LexicalRichness(tokens, preprocessor=None, tokenizer=None).mtld(threshold=0.72)
        assert mtld(tokens) == pytest.approx(reference, rel=1e-12)
    assert mtld(["a", "b", "c"]) == pytest.approx(LexicalRichness(["a", "b", "c"], None, None).mtld())


def test_minhash_estimates_jaccard_similarity() -> None:
    words = [f"w{i}" for i in range(400)]
    a, b = set(words[:300]), set(words[100:])  # 200 shared of 400: Jaccard 0.5
    estimate = float(np.mean(minhash(a) == minhash(b)))
    assert abs(estimate - 0.5) < 0.2  # 64 permutations: standard error about 0.06
    assert (minhash(a) == minhash(set(words[:300]))).all()
    assert float(np.mean(minhash(a) == minhash({f"x{i}" for i in range(300)}))) < 0.1


def test_distinct_n_counts_unique_ngrams_over_the_corpus() -> None:
    result = diversity_of([["a", "b", "a", "b"], ["a", "b", "c"]])
    assert result.distinct_1 == pytest.approx(3 / 7)  # a, b, c of 7 words
    assert result.distinct_2 == pytest.approx(3 / 5)  # (a,b), (b,a), (b,c) of 5 pairs


def test_quality_cases_are_valid_store_files(tmp_path: Path) -> None:
    """The case files are what the store reads: each one lists with a summary."""
    expt = tmp_path / "expt"
    shutil.copytree(Path(__file__).parents[3] / "datasets" / "inst-templates" / "sample", expt)
    install(expt, CASES)
    assert len(ConversationStore(expt).list()) == len(CASES)
