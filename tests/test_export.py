"""`convogen export` round trips: JSON Lines read back, ShareGPT turns, CSV, and a Hugging Face dataset
that `datasets.load_from_disk` and `load_dataset` read with the same rows; `stats --json`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from convogen_tui.core.keeping.store import ConversationStore
from tests.test_quality import DATA, install

CASES = [
    "clean-plain-fluoride",
    "clean-bold-blank-lines-nurse",
    "clean-numbered-garlic",
    "clean-no-twin-moon",
    "user-first",
    "socbot-twice-in-a-row",
    "here-is-and-note",
    "four-turns",
]


@pytest.fixture
def expt(sample: Path) -> Path:
    install(sample, [DATA / "cases" / f"{name}.json" for name in CASES])
    store = ConversationStore(sample)
    store.set_mark("clean-numbered-garlic", "kept")
    store.set_mark("four-turns", "kept")  # a reviewer keeps it despite its flag
    store.set_mark("clean-plain-fluoride", "flagged")
    return sample


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_jsonl_keeps_the_original_keys_and_adds_twin_flags_mark_and_provenance(
    cli, expt: Path, datasets: Path, tmp_path: Path
) -> None:
    out_path = tmp_path / "all.jsonl"
    code, out, err = cli("export", "sample", "--root", datasets, "--format", "jsonl", "-o", out_path)
    assert code == 0, err
    assert f"wrote {len(CASES)} conversation(s) to {out_path}" in out
    rows = {row["id"]: row for row in read_jsonl(out_path)}
    assert set(rows) == set(CASES)
    fluoride = rows["clean-plain-fluoride"]
    source = json.loads((expt / "conversations" / "clean-plain-fluoride.json").read_text())
    for key in ("tweet_id", "tweet", "conv", "disposition", "motivation"):
        assert fluoride[key] == source[key]
    twin = json.loads((expt / "restyled-conversations" / "clean-plain-fluoride.json").read_text())
    assert fluoride["restyled_conv"] == twin["restyled_conv"]
    assert fluoride["persona"] == {"motivation": "distrust", "disposition": "sarcastic"}
    assert fluoride["mark"] == "flagged" and fluoride["flags"] == []
    assert fluoride["provenance"]["created_at"] == source["provenance"]["created_at"]
    assert rows["user-first"]["flags"] == ["user-first", "near-duplicate"]
    assert rows["clean-no-twin-moon"]["restyled_conv"] is None


def test_selection_options_leave_out_flagged_or_keep_only_kept(cli, expt, datasets, tmp_path) -> None:
    clean = tmp_path / "clean.jsonl"
    code, out, _ = cli(
        "export", "sample", "--root", datasets, "--format", "jsonl", "-o", clean, "--exclude-flagged"
    )
    assert code == 0
    ids = {row["id"] for row in read_jsonl(clean)}
    assert ids == {
        "clean-bold-blank-lines-nurse",
        "clean-numbered-garlic",
        "clean-no-twin-moon",
        "four-turns",
    }
    assert f"{len(CASES) - 4} of {len(CASES)} left out" in out
    kept = tmp_path / "kept.jsonl"
    assert cli("export", "sample", "--root", datasets, "--format", "jsonl", "-o", kept, "--only-kept")[0] == 0
    assert {row["id"] for row in read_jsonl(kept)} == {"clean-numbered-garlic", "four-turns"}
    some = tmp_path / "some.jsonl"
    args = ("--exclude", "user-first", "--restyled-only")
    assert cli("export", "sample", "--root", datasets, "--format", "jsonl", "-o", some, *args)[0] == 0
    assert {row["id"] for row in read_jsonl(some)} == {
        "clean-plain-fluoride",
        "clean-bold-blank-lines-nurse",
        "clean-numbered-garlic",
    }


def test_an_existing_output_is_replaced_only_with_force(cli, expt, datasets, tmp_path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("precious\n")
    code, _, err = cli("export", "sample", "--root", datasets, "--format", "csv", "-o", target)
    assert code == 1 and "already exists" in err and "--force" in err
    assert target.read_text() == "precious\n"
    assert cli("export", "sample", "--root", datasets, "--format", "csv", "-o", target, "--force")[0] == 0
    assert target.read_text().startswith("id,tweet_id,tweet,")
    code, _, err = cli(
        "export", "sample", "--root", datasets, "--format", "csv", "-o", tmp_path / "no" / "x.csv"
    )
    assert code == 1 and "does not exist" in err


def test_sharegpt_turns_start_with_the_post_alternate_and_skip_unparseable(
    cli, expt, datasets, tmp_path
) -> None:
    path = tmp_path / "sharegpt.jsonl"
    code, out, _ = cli("export", "sample", "--root", datasets, "--format", "sharegpt", "-o", path)
    assert code == 0
    records = {r["id"]: r for r in read_jsonl(path)}
    # user-first, two SocBot in a row, and text around the dialog cannot be told apart as turns
    assert set(records) == set(CASES) - {"user-first", "socbot-twice-in-a-row", "here-is-and-note"}
    assert "3 skipped: turns cannot be parsed (alternation 1, user-first 1, wrapper 1)" in out
    source = json.loads((expt / "conversations" / "clean-bold-blank-lines-nurse.json").read_text())
    turns = records["clean-bold-blank-lines-nurse"]["conversations"]
    assert turns[0] == {"from": "human", "value": source["tweet"]}
    assert [t["from"] for t in turns] == ["human", "gpt"] * 8 + ["human"]
    assert turns[1]["value"].startswith("Thanks for sharing what you heard.")  # no "**SocBot:**"
    assert not any(t["value"].startswith(("SocBot", "User", "*")) for t in turns)
    assert records["clean-bold-blank-lines-nurse"]["persona"] == "distrust x cynical"
    restyled = tmp_path / "restyled.json"
    args = ("--dialog", "restyled")
    assert cli("export", "sample", "--root", datasets, "--format", "sharegpt", "-o", restyled, *args)[0] == 0
    array = json.loads(restyled.read_text())  # .json: one JSON array
    fluoride = next(r for r in array if r["id"] == "clean-plain-fluoride")["conversations"]
    assert [t["from"] for t in fluoride[:3]] == ["human", "gpt", "human"]
    assert fluoride[1]["value"].startswith("Honestly I get it")  # the echoed post is not a turn


def test_csv_reads_back_with_every_conversation(cli, expt, datasets, tmp_path) -> None:
    path = tmp_path / "out.csv"
    assert cli("export", "sample", "--root", datasets, "--format", "csv", "-o", path)[0] == 0
    with path.open(encoding="utf-8", newline="") as handle:
        rows = {row["id"]: row for row in csv.DictReader(handle)}
    assert set(rows) == set(CASES)
    conv = json.loads((expt / "conversations" / "clean-numbered-garlic.json").read_text())["conv"]
    assert rows["clean-numbered-garlic"]["conv"] == conv  # newlines, quotes and emoji intact
    assert rows["socbot-twice-in-a-row"]["flags"] == "extra-turns;alternation;near-duplicate"


def test_hf_dataset_loads_with_the_same_rows_and_has_a_card(cli, expt, datasets, tmp_path) -> None:
    import datasets as hf

    jsonl = tmp_path / "rows.jsonl"
    assert cli("export", "sample", "--root", datasets, "--format", "jsonl", "-o", jsonl)[0] == 0
    folder = tmp_path / "hf"
    code, out, err = cli("export", "sample", "--root", datasets, "--format", "hf", "-o", folder)
    assert code == 0, err
    assert "3 kept without messages" in out
    loaded = hf.load_from_disk(str(folder))
    expected = {row["id"]: row for row in read_jsonl(jsonl)}
    assert sorted(loaded["id"]) == sorted(expected)
    for row in loaded:
        source = expected[row["id"]]
        assert (row["conv"], row["tweet"], row["restyled_conv"], row["flags"], row["mark"]) == (
            source["conv"],
            source["tweet"],
            source["restyled_conv"],
            source["flags"],
            source["mark"],
        )
    nurse = next(r for r in loaded if r["id"] == "clean-bold-blank-lines-nurse")
    assert nurse["messages"][0]["role"] == "user" and nurse["messages"][1]["role"] == "assistant"
    assert next(r for r in loaded if r["id"] == "user-first")["messages"] == []
    parquet = hf.load_dataset("parquet", data_files=str(folder / "data" / "*.parquet"), split="train")
    assert sorted(parquet["id"]) == sorted(expected)
    card = (folder / "README.md").read_text()
    for text in ("hand-written", "distinct-1", "MTLD", "120 cells (20 seeds x 6 personas)", "| user-first |"):
        assert text in card
    assert "data/train-*.parquet" in card.split("---")[1]
    code, _, err = cli("export", "sample", "--root", datasets, "--format", "hf", "-o", folder)
    assert code == 1 and "already exists" in err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hf.")]  # no half-built folder left


def test_stats_json_has_counts_diversity_coverage_and_throughput(cli, expt, datasets) -> None:
    code, out, err = cli("stats", "sample", "--root", datasets, "--json")
    assert code == 0, err
    stats = json.loads(out)
    assert stats["conversations"] == len(CASES)
    assert 0 < stats["distinct_1"] < stats["distinct_2"] <= 1 and stats["mtld"] > 50
    # done: nurse, garlic (kept), moon; flagged: fluoride (marked) and climate (a wrapper) only
    assert {k: stats["coverage"][k] for k in ("cells", "done", "flagged", "deleted", "missing")} == {
        "cells": 120,
        "done": 3,
        "flagged": 2,
        "deleted": 0,
        "missing": 115,
    }
    assert stats["flags"]["user-first"] == {"count": 1, "rate": round(1 / len(CASES), 4)}
    assert stats["turns"]["counts"] == {"4": 1, "8": len(CASES) - 1}
    assert set(stats["throughput"]) >= {"tokens_per_second", "gpu_hours", "wall_hours"}
    code, out, _ = cli("stats", "sample", "--root", datasets)
    assert "coverage: 120 cells (20 seeds x 6 personas): 3 done, 2 flagged" in out and "MTLD" in out
