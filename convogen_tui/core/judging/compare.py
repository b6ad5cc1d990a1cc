"""Did an edit help? Two versions' figures side by side, and a paired test over the cells both made.

Each version's conversations give a count, flag rates (overall and per rule), turns, length,
distinct-1/2, MTLD, near-duplicate and reviewer rates, and judge scores where judgments exist
(``EXPT/judgments/<id>.json`` with ``{"scores": {criterion: int}}``). Over the paired cells (the
same seed x persona made by both), the cells flagged in one version and not the other are the
discordant pairs of an exact McNemar test: a two-sided binomial sign test, so "v3 halves the
flags, p = 0.003 over 50 pairs" is a line a researcher can cite.

A conversation nearly the same as the other version's conversation is not counted as a
near-duplicate here: a paired rerun is expected to resemble what it reruns.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convogen_tui.core.judging.quality import RULE_NAMES
from convogen_tui.core.judging.stats import DiversityCache
from convogen_tui.core.keeping.store import ConversationStore, ConversationSummary
from convogen_tui.core.keeping.versions import VersionEntry

JUDGMENTS = "judgments"  # EXPT/judgments/<conversation id>.json, written by the judge (#21)
NEAR = "near-duplicate"


def sign_test(only_a: int, only_b: int) -> float:
    """Exact two-sided p-value of McNemar's test: discordant pairs against a fair coin."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def own_flags(row: ConversationSummary, versions: dict[str, str]) -> list[str]:
    """A row's flags, less a near-duplicate of a conversation of another version (a paired rerun)."""
    other = versions.get(row.near_duplicate_of)
    if row.near_duplicate_of and other is not None and other != row.version:
        return [f for f in row.flags if f != NEAR]
    return list(row.flags)


def read_scores(expt_dir: Path, conv_id: str) -> dict[str, float]:
    """A conversation's judge scores by criterion; {} without a readable judgment file."""
    try:
        data = json.loads((Path(expt_dir) / JUDGMENTS / f"{conv_id}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    scores = data.get("scores") if isinstance(data, dict) else None
    if not isinstance(scores, dict):
        return {}
    return {
        str(k): float(v) for k, v in scores.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _mean(values: Sequence[float]) -> float:
    return round(statistics.fmean(values), 3) if values else 0.0


def _rate(count: int, n: int) -> float:
    return round(count / n, 4) if n else 0.0


def version_figures(
    store: ConversationStore,
    entry: VersionEntry,
    rows: Sequence[ConversationSummary],
    versions: dict[str, str],
) -> dict[str, Any]:
    """One version's figures (``rows``: its conversations; ``versions``: every row's version id)."""
    n = len(rows)
    flags = {row.id: own_flags(row, versions) for row in rows}
    counts = {rule: sum(rule in f for f in flags.values()) for rule in RULE_NAMES}
    diversity = DiversityCache().update(store, rows).as_dict()
    scores: dict[str, list[float]] = {}
    judged = 0
    for row in rows:
        found = read_scores(store.dir, row.id)
        judged += bool(found)
        for criterion, value in found.items():
            scores.setdefault(criterion, []).append(value)
    return {
        "version": entry.name,
        "note": entry.note,
        "conversations": n,
        "flagged": sum(1 for f in flags.values() if f),
        "flag_rate": _rate(sum(1 for f in flags.values() if f), n),
        "flags": {rule: _rate(c, n) for rule, c in counts.items()},
        "turns": _mean([r.turns for r in rows]),
        "length_chars": _mean([r.length for r in rows]),
        "distinct_1": diversity.get("distinct_1", 0.0),
        "distinct_2": diversity.get("distinct_2", 0.0),
        "mtld": diversity.get("mtld", 0.0),
        "near_duplicate_rate": _rate(sum(NEAR in f for f in flags.values()), n),
        "kept_rate": _rate(sum(r.mark == "kept" for r in rows), n),
        "reviewer_flagged_rate": _rate(sum(r.mark == "flagged" for r in rows), n),
        "judged": judged,
        "judge_scores": {c: _mean(v) for c, v in sorted(scores.items())},
    }


@dataclass(frozen=True)
class Pair:
    """One cell both versions made: its conversation in each (the earliest, if several)."""

    tweet_id: str
    persona: str
    a: ConversationSummary
    b: ConversationSummary


def pairs_of(a_rows: Sequence[ConversationSummary], b_rows: Sequence[ConversationSummary]) -> list[Pair]:
    """The seed x persona cells made by both versions, in seed then persona order."""

    def first(rows: Sequence[ConversationSummary]) -> dict[tuple[str, str, str], ConversationSummary]:
        out: dict[tuple[str, str, str], ConversationSummary] = {}
        for row in sorted(rows, key=lambda r: (r.created_at, r.id)):
            out.setdefault(row.key, row)
        return out

    left, right = first(a_rows), first(b_rows)
    return [Pair(k[0], f"{k[1]} x {k[2]}", left[k], right[k]) for k in sorted(left.keys() & right.keys())]


def compare_versions(
    store: ConversationStore,
    a: VersionEntry,
    b: VersionEntry,
    rows: Sequence[ConversationSummary] | None = None,
) -> dict[str, Any]:
    """`convogen compare`'s JSON: ``{"a": {...}, "b": {...}, "paired": {...}}``."""
    rows = list(store.list() if rows is None else rows)
    versions = {r.id: r.version for r in rows}
    a_rows = [r for r in rows if r.version == a.id]
    b_rows = [r for r in rows if r.version == b.id]
    pairs = pairs_of(a_rows, b_rows)
    only_a = only_b = both = 0
    for pair in pairs:
        flagged_a, flagged_b = bool(own_flags(pair.a, versions)), bool(own_flags(pair.b, versions))
        only_a += flagged_a and not flagged_b
        only_b += flagged_b and not flagged_a
        both += flagged_a and flagged_b
    return {
        "a": version_figures(store, a, a_rows, versions),
        "b": version_figures(store, b, b_rows, versions),
        "paired": {
            "cells": len(pairs),
            "only_a_flagged": only_a,
            "only_b_flagged": only_b,
            "both_flagged": both,
            "neither_flagged": len(pairs) - only_a - only_b - both,
            "p_value": round(sign_test(only_a, only_b), 6),
            "pairs": [
                {"tweet_id": p.tweet_id, "persona": p.persona, "a": p.a.id, "b": p.b.id} for p in pairs
            ],
        },
    }


def verdict_line(result: dict[str, Any]) -> str:
    """The sentence a researcher cites: which version has fewer flags over the pairs, and p."""
    a, b, paired = result["a"], result["b"], result["paired"]
    if not paired["cells"]:
        return f"no paired cells: {a['version']} and {b['version']} made no seed x persona cell in common"
    only_a, only_b = paired["only_a_flagged"], paired["only_b_flagged"]
    flagged_a = only_a + paired["both_flagged"]
    flagged_b = only_b + paired["both_flagged"]
    if only_a == only_b:
        how = f"{a['version']} and {b['version']} are flagged equally often"
    else:
        fewer = b["version"] if only_a > only_b else a["version"]
        how = f"{fewer} has fewer flags"
    return (
        f"{how}: {flagged_a} vs {flagged_b} flagged over {paired['cells']} paired cells "
        f"({only_a} only in {a['version']}, {only_b} only in {b['version']}), "
        f"p = {paired['p_value']:.3g} (exact sign test)"
    )


_FIGURES = [
    ("conversations", "convs", "{:.0f}"),
    ("flag_rate", "flag rate", "{:.1%}"),
    ("turns", "turns", "{:.2f}"),
    ("length_chars", "chars", "{:.0f}"),
    ("distinct_1", "distinct-1", "{:.3f}"),
    ("distinct_2", "distinct-2", "{:.3f}"),
    ("mtld", "MTLD", "{:.1f}"),
    ("near_duplicate_rate", "near-dup", "{:.1%}"),
    ("kept_rate", "kept", "{:.1%}"),
    ("reviewer_flagged_rate", "marked flag", "{:.1%}"),
]


def figure_lines(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(label, a, b, delta) for every figure, the flag rules either version has, and judge scores."""
    a, b = result["a"], result["b"]
    out: list[tuple[str, str, str, str]] = []

    def add(label: str, x: float, y: float, fmt: str) -> None:
        delta = f"{(y - x) * 100:+.1f} pts" if "%" in fmt else ("{:+" + fmt[2:]).format(y - x)
        out.append((label, fmt.format(x), fmt.format(y), delta))

    for key, label, fmt in _FIGURES:
        add(label, a[key], b[key], fmt)
        if key == "flag_rate":
            for rule in a["flags"]:
                if a["flags"][rule] or b["flags"][rule]:
                    add(f"  {rule}", a["flags"][rule], b["flags"][rule], "{:.1%}")
    for criterion in sorted(set(a["judge_scores"]) & set(b["judge_scores"])):
        add(f"judge: {criterion}", a["judge_scores"][criterion], b["judge_scores"][criterion], "{:.2f}")
    return out
