"""`convogen export` round trips: JSON Lines read back, ShareGPT turns, CSV, and a Hugging Face dataset
that `datasets.load_from_disk` and `load_dataset` read with the same rows; `stats --json`."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest

from convogen_tui.core.keeping.store import ConversationStore
from tests.core.judging.test_quality import DATA, install
from tests.fakehub import FakeHub, start

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


def test_sharegpt_turns_start_with_the_post_alternate_and_unparseable_ones_go_out_as_text(
    cli, expt, datasets, tmp_path
) -> None:
    path = tmp_path / "sharegpt.jsonl"
    code, out, err = cli("export", "sample", "--root", datasets, "--format", "sharegpt", "-o", path)
    assert code == 0, err
    records = {r["id"]: r for r in read_jsonl(path)}
    assert set(records) == set(CASES)  # nothing dropped
    assert f"wrote {len(CASES)} conversation(s)" in out
    assert (
        "3 as one text field (parsed: false): turns cannot be parsed (alternation 1, user-first 1, wrapper 1)"
        in out
    )
    # user-first, two SocBot in a row, and text around the dialog cannot be told apart as turns
    for conv_id, rule in (("user-first", "user-first"), ("socbot-twice-in-a-row", "alternation")):
        source = json.loads((expt / "conversations" / f"{conv_id}.json").read_text())
        record = records[conv_id]
        assert (record["parsed"], record["unparsed"], record["conversations"]) == (False, rule, [])
        assert record["text"] == source["conv"] and record["tweet"] == source["tweet"]
    source = json.loads((expt / "conversations" / "clean-bold-blank-lines-nurse.json").read_text())
    nurse = records["clean-bold-blank-lines-nurse"]
    turns = nurse["conversations"]
    assert nurse["parsed"] is True and "text" not in nurse
    assert turns[0] == {"from": "human", "value": source["tweet"]}
    assert [t["from"] for t in turns] == ["human", "gpt"] * 8 + ["human"]
    assert turns[1]["value"].startswith("Thanks for sharing what you heard.")  # no "**SocBot:**"
    assert not any(t["value"].startswith(("SocBot", "User", "*")) for t in turns)
    assert nurse["persona"] == "distrust x cynical"
    restyled = tmp_path / "restyled.json"
    args = ("--dialog", "restyled")
    code, out, err = cli(
        "export", "sample", "--root", datasets, "--format", "sharegpt", "-o", restyled, *args
    )
    assert code == 0
    array = json.loads(restyled.read_text())  # .json: one JSON array
    fluoride = next(r for r in array if r["id"] == "clean-plain-fluoride")["conversations"]
    assert [t["from"] for t in fluoride[:3]] == ["human", "gpt", "human"]
    assert fluoride[1]["value"].startswith("Honestly I get it")  # the echoed post is not a turn
    # those without a twin cannot go out with --dialog restyled: said, with the kept ones named
    assert len(array) == 3 and "wrote 3 conversation(s)" in out
    shortfall = "5 of 8 asked for not written (not-restyled 5), 1 of them marked kept: four-tur"
    assert shortfall in out and shortfall in err


def test_a_kept_conversation_is_never_dropped_silently(cli, expt, datasets, tmp_path) -> None:
    store = ConversationStore(expt)
    store.set_mark("clean-no-twin-moon", "kept")
    store.set_mark("user-first", "kept")
    path = tmp_path / "kept.jsonl"
    args = ("--format", "sharegpt", "--only-kept", "-o", path)
    code, out, _ = cli("export", "sample", "--root", datasets, *args)
    assert code == 0 and "wrote 4 conversation(s)" in out
    records = {r["id"]: r for r in read_jsonl(path)}
    assert set(records) == {"clean-numbered-garlic", "four-turns", "clean-no-twin-moon", "user-first"}
    assert records["user-first"]["parsed"] is False  # unparseable, kept: out as text
    restyled = tmp_path / "kept-restyled.jsonl"
    args = ("--format", "sharegpt", "--only-kept", "--dialog", "restyled", "-o", restyled)
    code, _, err = cli("export", "sample", "--root", datasets, *args)
    assert code == 0
    assert "3 of 4 asked for not written (not-restyled 3), 3 of them marked kept: " in err
    assert all(conv_id[:8] in err for conv_id in ("clean-no-twin-moon", "four-turns", "user-first"))
    assert [r["id"] for r in read_jsonl(restyled)] == ["clean-numbered-garlic"]


def test_an_export_that_writes_nothing_fails_unless_allowed(cli, sample, datasets, tmp_path) -> None:
    install(sample, [DATA / "cases" / "clean-no-twin-moon.json"])
    path = tmp_path / "none.json"
    base = ("export", "sample", "--root", datasets, "--format", "sharegpt", "-o", path)
    code, out, err = cli(*base, "--only-kept")
    assert code == 1 and "no conversation written" in err and "1 left out by the selection" in err
    assert "--allow-empty" in err and not path.exists()
    code, _, err = cli(*base, "--dialog", "restyled")
    assert code == 1 and "not-restyled 1" in err and not path.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left
    code, out, _ = cli(*base, "--only-kept", "--allow-empty")
    assert code == 0 and json.loads(path.read_text()) == [] and "wrote 0 conversation(s)" in out
    folder = tmp_path / "hf"
    code, _, err = cli("export", "sample", "--root", datasets, "--format", "hf", "-o", folder, "--only-kept")
    assert code == 1 and "no conversation written" in err and not folder.exists()


def test_numbered_labels_in_a_twin_are_labels_and_a_first_user_reply_is_not_the_post(
    cli, sample, datasets, tmp_path
) -> None:
    [case] = install(sample, [DATA / "cases" / "clean-plain-fluoride.json"]).values()
    tweet = case["conversation"]["tweet"]
    twin = sample / "restyled-conversations" / "clean-plain-fluoride.json"
    numbered = {
        **case["restyled"],
        "restyled_conv": f"1. User: {tweet}\n2. SocBot: Why fluoride?\nTweet 3 - User: It is in the news.\n"
        "4/4 SocBot: Which news?\n5) **User:** All of it.",
    }
    twin.write_text(json.dumps(numbered))
    path = tmp_path / "numbered.jsonl"
    args = ("--format", "sharegpt", "--dialog", "restyled", "-o", path)
    assert cli("export", "sample", "--root", datasets, *args)[0] == 0
    [record] = read_jsonl(path)
    assert record["conversations"] == [
        {"from": "human", "value": tweet},
        {"from": "gpt", "value": "Why fluoride?"},
        {"from": "human", "value": "It is in the news."},
        {"from": "gpt", "value": "Which news?"},
        {"from": "human", "value": "All of it."},
    ]
    first_reply = {
        **case["restyled"],
        "restyled_conv": "1. User: How did you get that?\n2. SocBot: From you.",
    }
    twin.write_text(json.dumps(first_reply))
    assert cli("export", "sample", "--root", datasets, *args, "--force")[0] == 0
    [record] = read_jsonl(path)
    # the User's question is not the seed post: the thread starts with the User, so it is not turns
    assert record["parsed"] is False and record["unparsed"] == "user-first"
    assert record["tweet"] == tweet and "How did you get that?" in record["text"]


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
    assert (
        "3 without messages (parsed: false): turns cannot be parsed (alternation 1, user-first 1, wrapper 1)"
        in out
    )
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
    user_first = next(r for r in loaded if r["id"] == "user-first")
    assert (user_first["messages"], user_first["parsed"], user_first["unparsed"]) == ([], False, "user-first")
    assert nurse["parsed"] is True
    parquet = hf.load_dataset("parquet", data_files=str(folder / "data" / "*.parquet"), split="train")
    assert sorted(parquet["id"]) == sorted(expected)
    card = (folder / "README.md").read_text()
    for text in ("hand-written", "distinct-1", "MTLD", "120 cells (20 seeds x 6 personas)", "| user-first |"):
        assert text in card
    assert "data/train-*.parquet" in card.split("---")[1]
    # the card's counts are the CLI's
    assert f"| conversations | {len(CASES)} |" in card
    for rule, n in (("alternation", 1), ("user-first", 1), ("wrapper", 1)):
        assert f"| turns not parsed, conv only (parsed: false; {rule}) | {n} |" in card
    assert card.count("turns not parsed") == 3
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


def test_percentiles_are_computed_on_the_data(cli, expt, datasets) -> None:
    """p10/p90 stay within the data (the issue saw p10 -275 with a minimum of 56, and p90 7.2 turns
    with a maximum of 6): they are statistics.quantiles over the values as a whole population."""
    stats = json.loads(cli("stats", "sample", "--root", datasets, "--json")[1])
    rows = ConversationStore(expt).list()
    for key, values in (("length_chars", [r.length for r in rows]), ("turns", [r.turns for r in rows])):
        expected = statistics.quantiles(values, n=10, method="inclusive")
        got = stats[key]
        assert (got["p10"], got["p90"]) == (round(expected[0], 2), round(expected[-1], 2))
        assert got["min"] <= got["p10"] <= got["median"] <= got["p90"] <= got["max"]
    out = cli("stats", "sample", "--root", datasets)[1]
    assert f"p10 {stats['length_chars']['p10']}, p90 {stats['length_chars']['p90']}" in out


@pytest.mark.process
def test_hf_push_to_hub_uploads_the_card_and_parquet_with_the_token_never_shown(
    cli, expt, datasets, tmp_path, monkeypatch
) -> None:
    hub = FakeHub()
    server = start(hub)
    try:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        folder = tmp_path / "hf"
        args = ("export", "sample", "--root", datasets, "--format", "hf", "-o", folder)
        monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_123")
        code, out, err = cli(*args, "--push-to-hub", "lab/convs")
        assert code == 1 and "refused the upload" in err and "HF_TOKEN" in err
        assert "hf_wrong_token_123" not in out + err and not hub.uploaded
        monkeypatch.setenv("HF_TOKEN", hub.upload_token)
        code, out, err = cli(*args, "--force", "--push-to-hub", "lab/convs", "--private")
        assert code == 0, err
        assert "pushed to the Hub as dataset lab/convs (private)" in out and hub.upload_token not in out + err
        created = hub.created["lab/convs"]
        assert created["type"] == "dataset" and (
            created.get("private") is True or created.get("visibility") == "private"
        )
        files = hub.uploaded["lab/convs"]
        assert set(files) == {"README.md", "data/train-00000-of-00001.parquet"}
        assert files["README.md"] == (folder / "README.md").read_bytes()
        assert (
            files["data/train-00000-of-00001.parquet"]
            == (folder / "data" / "train-00000-of-00001.parquet").read_bytes()
        )
        assert set(hub.auth_seen) == {"Bearer hf_wrong_token_123", f"Bearer {hub.upload_token}"}
        code, _, err = cli(
            "export",
            "sample",
            "--root",
            datasets,
            "--format",
            "jsonl",
            "-o",
            tmp_path / "a.jsonl",
            "--push-to-hub",
            "lab/x",
        )
        assert code == 1 and "go with --format hf" in err
    finally:
        server.shutdown()
