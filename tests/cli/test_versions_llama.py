"""Prompt versions end to end on the embedded model: generate, edit conv-gen.txt, `--pair-with v1`,
`compare --json`, `versions --diff`, and the old conversations' verdicts unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.llama  # runs the embedded model through llama.cpp


def show(cli, datasets: Path) -> dict[str, dict]:
    code, out, err = cli("show", "sample", "--root", datasets, "--json")
    assert code == 0, err
    return {row["id"]: row for row in map(json.loads, out.splitlines())}


def test_pair_with_reruns_the_same_cells_and_compare_pairs_them(cli, sample: Path, datasets: Path) -> None:
    run = ("--root", datasets, "--max-tokens", "100", "--no-restyle", "--no-constrain", "--parallel", "3")
    code, _, err = cli("generate", "sample", "--limit", "3", "--seed", "11", *run)
    assert code == 0, err
    before = show(cli, datasets)
    conv_gen = sample / "conv-gen.txt"
    conv_gen.write_text(conv_gen.read_text().replace("exactly 8 turns", "exactly 4 turns"))

    code, out, err = cli("generate", "sample", "--pair-with", "v1", *run)
    assert code == 0, err
    assert "pairing 3 cell(s)" in out
    after = show(cli, datasets)
    assert {i: after[i]["flags"] for i in before} == {i: r["flags"] for i, r in before.items()}
    new = {i: r for i, r in after.items() if i not in before}
    assert {r["version"] for r in new.values()} == {"v2"} and {r["version"] for r in before.values()} == {
        "v1"
    }
    cell = lambda r: (r["tweet_id"], r["persona"])  # noqa: E731
    assert sorted(map(cell, new.values())) == sorted(map(cell, before.values()))  # exactly those cells
    seeds = {}
    for conv_id, row in after.items():
        data = json.loads((sample / "conversations" / f"{conv_id}.json").read_text())
        seeds.setdefault(cell(row), set()).add(data["provenance"]["random_seed"])
    assert all(len(s) == 1 for s in seeds.values())  # the same random seed in both versions of a cell

    code, out, err = cli("compare", "sample", "v1", "v2", "--json", "--root", datasets)
    assert code == 0, err
    result = json.loads(out)
    assert result["paired"]["cells"] == 3
    assert result["a"]["conversations"] == result["b"]["conversations"] == 3

    def flagged(row: dict) -> bool:  # a near-duplicate of the other version's conversation does not count
        other = after.get(row["near_duplicate_of"] or "", row)
        return bool([f for f in row["flags"] if f != "near-duplicate" or other["version"] == row["version"]])

    for side, name in (("a", "v1"), ("b", "v2")):
        assert result[side]["flagged"] == sum(flagged(r) for r in after.values() if r["version"] == name)
    pairs = {(p["a"], p["b"]) for p in result["paired"]["pairs"]}
    only_a = sum(flagged(after[a]) and not flagged(after[b]) for a, b in pairs)
    assert result["paired"]["only_a_flagged"] == only_a
    code, out, _ = cli("versions", "sample", "--diff", "v1", "v2", "--root", datasets)
    assert code == 0 and "-Write exactly 8 turns" in out and "+Write exactly 4 turns" in out
    code, out, _ = cli("generate", "sample", "--pair-with", "v1", *run)
    assert code == 0 and "nothing to do" in out  # resumable: those cells are made by the current texts
    code, out, _ = cli("generate", "sample", "--refresh-stale", *run)
    assert code == 0 and "nothing to do: the current texts already made the stale cells (3" in out
