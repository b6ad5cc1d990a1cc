"""Calibration of the judge against the reviewer's marks, checked against a count done by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convogen_tui.core.judging.calibration import calibrate, cohen_kappa
from convogen_tui.core.judging.judge import current_keys
from convogen_tui.core.keeping.records import (
    ConversationRecord,
    JudgmentProvenance,
    JudgmentRecord,
    TemplateRef,
)
from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.core.making.experiment import load_experiment

CRITERIA = ["addresses_claim", "evidence", "civility", "persona_fit", "restyle_faithful"]

# (mark, civility, evidence); the other three criteria score 3 everywhere
MARKED = [
    ("kept", 5, 4),
    ("kept", 4, 4),
    ("kept", 4, 3),
    ("kept", 3, 2),
    ("flagged", 2, 1),
    ("flagged", 3, 2),
    ("flagged", 1, 2),
    ("flagged", 2, 1),
]


def add(
    store: ConversationStore, n: int, mark: str, scores: dict[str, int] | None, failed: bool = False
) -> str:
    record = ConversationRecord(tweet_id=str(n), tweet=f"claim {n}", conv=f"SocBot: hi {n}\nUser: no {n}")
    conv_id = store.save_conversation(record, f"conv-{n:02d}")
    if mark:
        store.set_mark(conv_id, mark)
    keys = current_keys(load_experiment(store.dir))
    assert keys is not None
    made = JudgmentProvenance(template=TemplateRef(file="judge.txt", sha256=keys[0]), criteria_sha256=keys[1])
    if failed:
        store.save_judgment(
            conv_id, JudgmentRecord(verdict="judge-failed", reason="not valid JSON", provenance=made)
        )
    elif scores is not None:
        store.save_judgment(conv_id, JudgmentRecord(scores=scores, rationale="by hand", provenance=made))
    return conv_id


@pytest.fixture
def marked(sample: Path) -> Path:
    store = ConversationStore(sample)
    for n, (mark, civility, evidence) in enumerate(MARKED):
        add(store, n, mark, {**dict.fromkeys(CRITERIA, 3), "civility": civility, "evidence": evidence})
    add(store, 20, "kept", None, failed=True)  # judge-failed: no scores to compare
    add(store, 21, "", dict.fromkeys(CRITERIA, 1))  # judged, not marked
    add(store, 22, "flagged", None)  # marked, not judged
    return sample


def test_kappa_of_a_hand_counted_table() -> None:
    # reviewer kept 4 (judge: 4 kept), flagged 4 (judge: 1 kept, 3 flagged)
    # p_o = 7/8; p_e = 4/8 * 5/8 + 4/8 * 3/8 = 1/2; kappa = (7/8 - 1/2) / (1/2) = 0.75
    table = {"kept": {"kept": 4, "flagged": 0}, "flagged": {"kept": 1, "flagged": 3}}
    assert cohen_kappa(table) == pytest.approx(0.75)
    assert cohen_kappa({"kept": {"kept": 3, "flagged": 3}, "flagged": {"kept": 3, "flagged": 3}}) == 0.0


def test_calibration_json_matches_the_hand_count(marked: Path, cli) -> None:
    code, out, _ = cli("judge", marked, "--calibration", "--json")
    assert code == 0
    report = json.loads(out)
    assert (report["n"], report["kept"], report["flagged"], report["enough"]) == (8, 4, 4, True)
    civility = report["criteria"]["civility"]
    # civility >= 3 says kept: kept 5,4,4,3 all kept; flagged 2,3,1,2 -> one (the 3) called kept.
    # civility >= 4 is as accurate (7/8) with the same kappa: the lower threshold is reported.
    assert civility["threshold"] == 3 and civility["n"] == 8
    assert civility["accuracy"] == pytest.approx(0.875) and civility["kappa"] == pytest.approx(0.75)
    assert civility["confusion"] == {"kept": {"kept": 4, "flagged": 0}, "flagged": {"kept": 1, "flagged": 3}}
    # evidence >= 3: kept 4,4,3 kept and 2 flagged; flagged 1,2,2,1 all flagged: 7/8
    # p_e = 1/2 * 3/8 + 1/2 * 5/8 = 1/2, kappa 0.75
    evidence = report["criteria"]["evidence"]
    assert evidence["threshold"] == 3 and evidence["kappa"] == pytest.approx(0.75)
    assert evidence["confusion"] == {"kept": {"kept": 3, "flagged": 1}, "flagged": {"kept": 0, "flagged": 4}}
    # a constant criterion says "kept" for all: accuracy 1/2, kappa 0
    assert (
        report["criteria"]["persona_fit"]["accuracy"] == 0.5
        and report["criteria"]["persona_fit"]["kappa"] == 0
    )
    # means: kept 3.6 3.4 3.2 2.8, flagged 2.4 2.8 2.4 2.4 -> >= 2.8: 4 K->K, 1 F->K
    mean = report["mean"]
    assert mean["threshold"] == 2.8 and mean["kappa"] == pytest.approx(0.75)
    assert mean["confusion"] == {"kept": {"kept": 4, "flagged": 0}, "flagged": {"kept": 1, "flagged": 3}}


def test_calibration_text_is_a_table_and_a_verdict(marked: Path, cli) -> None:
    code, out, _ = cli("judge", marked, "--calibration")
    assert code == 0 and "8 marked conversations (4 kept, 4 flagged)" in out
    civility = next(line for line in out.splitlines() if line.startswith("civility"))
    assert civility.split() == ["civility", "3", "0.88", "0.75", "4", "0", "1", "3"]
    assert "substantial agreement" in out


def test_too_few_marks_is_a_plain_sentence(sample: Path, cli) -> None:
    store = ConversationStore(sample)
    add(store, 1, "kept", dict.fromkeys(CRITERIA, 4))
    add(store, 2, "flagged", dict.fromkeys(CRITERIA, 2))
    report = calibrate(store.list(), store.judgments(), CRITERIA)
    assert not report.enough and report.criteria == [] and report.mean is None
    code, out, _ = cli("judge", sample, "--calibration")
    assert code == 0 and out.startswith("Too few marks to calibrate the judge: 2 judged conversation(s)")
    assert "(1 kept, 1 flagged)" in out and "Review (o keep, f flag)" in out
