"""The judge's scores where the data is read: show, show --json, stats --json, export and --min-score."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from convogen_tui.core.keeping.store import ConversationStore
from tests.core.judging.test_calibration import CRITERIA, add


@pytest.fixture
def judged(sample: Path) -> Path:
    store = ConversationStore(sample)
    add(store, 1, "kept", {**dict.fromkeys(CRITERIA, 4), "civility": 5})
    add(store, 2, "flagged", {**dict.fromkeys(CRITERIA, 3), "persona_fit": 1})
    add(store, 3, "", None, failed=True)
    add(store, 4, "", None)
    return sample


def test_show_lists_the_lowest_score_and_show_json_the_scores(judged: Path, cli) -> None:
    code, out, _ = cli("show", judged)
    assert code == 0
    lines = {line[:7]: line for line in out.splitlines() if line.startswith("conv-")}
    assert "judge=4 " in lines["conv-01"] and "judge=1 " in lines["conv-02"]
    assert "judge-failed" in lines["conv-03"] and "judge" not in lines["conv-04"]
    code, out, _ = cli("show", judged, "--json")
    rows = {row["id"]: row for row in map(json.loads, out.splitlines())}
    assert rows["conv-01"]["judge"] == {**dict.fromkeys(CRITERIA, 4), "civility": 5}
    assert rows["conv-03"]["judge"] is None and rows["conv-03"]["judge_failed"] == "not valid JSON"
    assert rows["conv-04"]["judge"] is None and rows["conv-04"]["judge_failed"] is None
    code, out, _ = cli("show", judged, "conv-02")
    assert "judge: addresses_claim 3 · evidence 3 · civility 3 · persona_fit 1" in out


def test_a_changed_judge_template_marks_judgments_stale(judged: Path, cli) -> None:
    (judged / "judge.txt").write_text("Judge {conv} on {criteria}\n", encoding="utf-8")
    _, out, _ = cli("show", judged, "--json")
    assert all(row["judge_stale"] for row in map(json.loads, out.splitlines()) if row["judge"])
    _, out, _ = cli("stats", judged, "--json")
    assert json.loads(out)["judgments"] == {"judged": 3, "failed": 1, "stale": 3, "scale": [1, 5]}


def test_stats_json_has_per_criterion_histograms_and_calibration(judged: Path, cli) -> None:
    assert cli("stats", judged, "--json")[0] == 0
    _, out, _ = cli("stats", judged, "--json")
    stats = json.loads(out)
    assert stats["judge"]["civility"] == {
        "mean": 4.0,
        "n": 2,
        "histogram": {"1": 0, "2": 0, "3": 1, "4": 0, "5": 1},
    }
    assert stats["judge"]["persona_fit"]["mean"] == 2.5
    assert stats["calibration"]["enough"] is False and "Too few marks" in stats["calibration"]["note"]
    _, text, _ = cli("stats", judged)
    assert "judge: 3 judged (1 failed, 0 stale); mean addresses_claim 3.50" in text


def test_export_carries_scores_and_min_score_selects(judged: Path, tmp_path: Path, cli) -> None:
    out = tmp_path / "all.jsonl"
    assert cli("export", judged, "--format", "jsonl", "-o", out)[0] == 0
    rows = {row["id"]: row for row in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert rows["conv-01"]["judge"] == {
        "scores": {**dict.fromkeys(CRITERIA, 4), "civility": 5},
        "rationale": "by hand",
    }
    assert rows["conv-03"]["judge"]["verdict"] == "judge-failed" and rows["conv-04"]["judge"] is None
    picked = tmp_path / "picked.csv"
    code, text, _ = cli("export", judged, "--format", "csv", "-o", picked, "--min-score", "persona_fit=2")
    assert code == 0 and "judged persona_fit >= 2" in text and "3 of 4 left out" in text
    (row,) = csv.DictReader(picked.open(encoding="utf-8"))
    assert row["id"] == "conv-01" and row["judge_lowest"] == "4" and "civility=5" in row["judge_scores"]


def test_min_score_names_an_unknown_criterion(judged: Path, tmp_path: Path, cli) -> None:
    code, _, err = cli(
        "export", judged, "--format", "jsonl", "-o", tmp_path / "x.jsonl", "--min-score", "civil=3"
    )
    assert code == 1 and "no criterion 'civil'" in err and "civility" in err
    with pytest.raises(SystemExit):
        cli("export", judged, "--format", "jsonl", "-o", tmp_path / "x.jsonl", "--min-score", "civility")


def test_hf_export_has_the_judge_column(judged: Path, tmp_path: Path, cli) -> None:
    import datasets as hf

    folder = tmp_path / "hf"
    assert cli("export", judged, "--format", "hf", "-o", folder, "--min-score", "civility=5")[0] == 0
    (row,) = hf.load_from_disk(str(folder))
    assert row["id"] == "conv-01" and json.loads(row["judge"])["scores"]["civility"] == 5


def test_judge_without_criteria_or_with_a_broken_template_says_so_before_loading_a_model(
    sample: Path, cli
) -> None:
    (sample / "judge.txt").write_text("Judge {conv} by {criteria} and {mood}\n", encoding="utf-8")
    code, _, err = cli("judge", sample)
    assert code == 1 and "judge.txt:1" in err and "{mood}" in err
    setup = json.loads((sample / "expt-setup.json").read_text(encoding="utf-8"))
    del setup["judge"]
    (sample / "expt-setup.json").write_text(json.dumps(setup), encoding="utf-8")
    code, _, err = cli("judge", sample)
    assert code == 1 and "no judge criteria" in err and '"judge"' in err
    code, _, err = cli("generate", sample, "--judge", "--limit", "1")
    assert code == 1 and "no judge criteria" in err
