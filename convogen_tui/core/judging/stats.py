"""Per-experiment statistics: counts, flag rates, turn and length distributions, diversity, coverage,
and what the runs cost (tokens, tok/s, GPU-hours) from the files' provenance.

Everything comes from the listing index, no file is read: diversity too, from the n-gram sketches
the index keeps per shard of conversations (a shard that a delete or an edit made dirty reads its
files again, once).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.judging.coverage import Coverage, coverage_of, trashed_keys
from convogen_tui.core.judging.dialog import dialog_words
from convogen_tui.core.judging.diversity import Diversity, DiversitySketch
from convogen_tui.core.judging.quality import RULE_NAMES
from convogen_tui.core.judging.scores import judge_stats
from convogen_tui.core.keeping.records import read_conversation
from convogen_tui.core.keeping.store import ConversationStore, ConversationSummary
from convogen_tui.core.keeping.versions import version_names
from convogen_tui.core.making.check import seeds_for
from convogen_tui.core.making.experiment import Experiment

HISTOGRAM_BINS = 10


def index_diversity(store: ConversationStore, rows: Sequence[ConversationSummary]) -> DiversitySketch:
    """The whole experiment's diversity from the listing index: the shards' n-gram sketches and
    the rows' word counts and MTLD, no file read (but those of shards a delete made dirty)."""
    sketch = DiversitySketch()
    sketch.unigrams, sketch.bigrams = store.diversity_sketch()
    for row in rows:
        if row.words:
            sketch.n_unigrams += row.words
            sketch.n_bigrams += row.words - 1
            sketch.mtld_sum += row.mtld
            sketch.texts += 1
    return sketch


def files_diversity(store: ConversationStore, rows: Sequence[ConversationSummary]) -> DiversitySketch:
    """The diversity of some conversations (a selection), reading their files one at a time."""
    sketch = DiversitySketch()
    for row in rows:
        try:
            record = read_conversation(store.conversation_path(row.id))
        except ConvogenError:
            continue
        sketch.add(dialog_words(record.conv), row.mtld)
    return sketch


@dataclass
class DiversityCache:
    """The diversity of one version's conversations (several versions: the index's sketches are
    the whole experiment's), kept up to date as they arrive, reading each file once; in bounded
    memory (a sketch)."""

    diversity: DiversitySketch = field(default_factory=DiversitySketch)
    ids: set[str] = field(default_factory=set)

    def update(self, store: ConversationStore, rows: Sequence[ConversationSummary]) -> DiversitySketch:
        current = {row.id for row in rows}
        if not self.ids <= current:  # one went away: its n-grams cannot be taken out, so start over
            self.diversity, self.ids = DiversitySketch(), set()
        fresh = [row for row in rows if row.id not in self.ids]
        self.diversity.merge(files_diversity(store, fresh))
        self.ids |= {row.id for row in fresh}
        return self.diversity


def experiment_coverage(
    experiment: Experiment, store: ConversationStore, rows: Sequence[ConversationSummary]
) -> Coverage:
    """The seed x persona grid of an experiment; ConvogenError when it has no seed file."""
    seeds = seeds_for(experiment).seeds
    return coverage_of(seeds, experiment.personas(), rows, trashed_keys(store))


def distribution(values: Sequence[float], bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """Mean, median, spread and an equal-width histogram (``[{"from", "to", "count"}]``)."""
    if not values:
        return {"count": 0, "mean": 0, "median": 0, "min": 0, "max": 0, "histogram": []}
    values = sorted(values)  # once: the median and the quantiles below sort again, in linear time
    low, high = values[0], values[-1]
    width = (high - low) / bins if high > low else 1
    # each value's bin, int((value - low) / width) capped at the last, computed for all at once
    places = ((np.asarray(values, dtype=np.float64) - low) / width).astype(np.int64)
    n_bins = bins if high > low else 1
    counts = [int(n) for n in np.bincount(np.minimum(places, n_bins - 1), minlength=n_bins)]
    histogram = [
        {"from": round(low + i * width, 2), "to": round(low + (i + 1) * width, 2), "count": n}
        for i, n in enumerate(counts)
    ]
    # "inclusive": the data are the whole population, so percentiles stay within min..max (the
    # default "exclusive" method extrapolates beyond them for small samples)
    quantiles = statistics.quantiles(values, n=10, method="inclusive") if len(values) > 1 else [values[0]] * 9
    return {
        "count": len(values),
        "mean": round(statistics.fmean(values), 2),
        "median": statistics.median(values),
        "min": low,
        "max": high,
        "p10": round(quantiles[0], 2),
        "p90": round(quantiles[-1], 2),
        "histogram": histogram,
    }


def _busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """Wall time covered by (start, end) intervals: parallel streams overlap, so they are merged."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def throughput(rows: Sequence[ConversationSummary]) -> dict[str, Any]:
    """Tokens written, tok/s over the time spent generating, and (GPU-)hours from provenance."""
    passes: list[tuple[float, float, bool]] = []
    tokens = restyle_tokens = 0
    for row in rows:
        tokens += row.completion_tokens
        restyle_tokens += row.restyle_tokens
        if row.elapsed_s > 0:
            passes.append((row.created_at - row.elapsed_s, row.created_at, row.gpu))
        if row.restyle_elapsed_s > 0 and row.restyled_at > 0:
            passes.append((row.restyled_at - row.restyle_elapsed_s, row.restyled_at, row.gpu))
    busy = _busy_seconds([(a, b) for a, b, _ in passes])
    gpu = _busy_seconds([(a, b) for a, b, on_gpu in passes if on_gpu])
    streams = [r.completion_tokens / r.elapsed_s for r in rows if r.elapsed_s > 0 and r.completion_tokens]
    return {
        "completion_tokens": tokens,
        "restyle_tokens": restyle_tokens,
        "tokens_per_second": round((tokens + restyle_tokens) / busy, 2) if busy else 0.0,
        "stream_tokens_per_second": round(statistics.fmean(streams), 2) if streams else 0.0,
        "wall_hours": round(busy / 3600, 4),
        "gpu_hours": round(gpu / 3600, 4),
        "models": [
            {"name": name, "fingerprint": fingerprint, "conversations": n}
            for (name, fingerprint), n in Counter((r.model, r.fingerprint) for r in rows).most_common()
        ],
    }


def figures(rows: Sequence[ConversationSummary], diversity: Diversity) -> dict[str, Any]:
    """Counts, flags, turns, lengths and diversity of some conversations."""
    n = len(rows)
    flag_counts = Counter(flag for row in rows for flag in row.flags)
    flags = {
        rule: {
            "count": flag_counts.get(rule, 0),
            "rate": round(flag_counts.get(rule, 0) / n, 4) if n else 0.0,
        }
        for rule in RULE_NAMES
    }
    return {
        "conversations": n,
        "restyled": sum(1 for r in rows if r.restyled),
        "with_flags": sum(1 for r in rows if r.flags),
        "clean": sum(1 for r in rows if not r.flags),
        "marks": {
            "flagged": sum(r.mark == "flagged" for r in rows),
            "kept": sum(r.mark == "kept" for r in rows),
        },
        "near_duplicates": sum(1 for r in rows if r.near_duplicate_of),
        **diversity.as_dict(),
        "flags": flags,
        "turns": {
            **distribution([r.turns for r in rows]),
            "counts": {str(k): v for k, v in sorted(Counter(r.turns for r in rows).items())},
        },
        "length_chars": distribution([r.length for r in rows]),
        "length_words": distribution([r.words for r in rows]),
        "restyled_length_chars": distribution([r.restyled_length for r in rows if r.restyled]),
    }


def version_figures(
    store: ConversationStore,
    rows: Sequence[ConversationSummary],
    caches: dict[str, DiversityCache] | None = None,
) -> list[dict[str, Any]]:
    """Every figure per version (v1, v2...), with the turn target of that version's template.

    ``caches``: diversity per version id kept between calls (the Stats screen), so files are read once.
    """
    caches = {} if caches is None else caches
    names = version_names(store.dir, rows)
    by_version: dict[str, list[ConversationSummary]] = {}
    for row in rows:
        by_version.setdefault(row.version, []).append(row)
    out = []
    several = len(by_version) > 1
    for version_id, mine in sorted(by_version.items(), key=lambda kv: _number(names.get(kv[0], ""))):
        entry = {
            "version": names.get(version_id, "?"),
            "id": version_id,
            "turns_target": store.by_version.for_shas(mine[0].template_sha256).turns,
        }
        if several:
            diversity = caches.setdefault(version_id, DiversityCache()).update(store, mine)
            entry |= figures(mine, diversity or Diversity())
        else:  # one version: its figures are the experiment's (above), only name it here
            entry["conversations"] = len(mine)
        out.append(entry)
    return out


def _number(name: str) -> int:
    return int(name[1:]) if name[1:].isdigit() else 0


def experiment_stats(
    experiment: Experiment,
    store: ConversationStore | None = None,
    rows: Sequence[ConversationSummary] | None = None,
    diversity: Diversity | DiversitySketch | None = None,
    coverage: Coverage | None = None,
    version_diversity: dict[str, DiversityCache] | None = None,
) -> dict[str, Any]:
    """The whole picture as plain JSON-ready data (``convogen stats --json``, the dataset card).

    ``rows`` defaults to every conversation; pass a subset (an export's selection) to describe it.
    Coverage is None when the experiment has no seed file.
    """
    store = store or ConversationStore(experiment.dir)
    every = store.list()
    whole = rows is None
    rows = list(every if rows is None else rows)
    if diversity is None:
        diversity = index_diversity(store, rows) if whole else files_diversity(store, rows)
    if coverage is None:
        try:
            coverage = experiment_coverage(experiment, store, every)
        except ConvogenError:
            coverage = None
    templates: dict[str, list[str]] = {
        "conv-gen": sorted({r.template_sha256 for r in rows if r.template_sha256}),
        "conv-restyle": sorted({r.restyle_template_sha256 for r in rows if r.restyle_template_sha256}),
    }
    return {
        "experiment": experiment.name,
        **figures(rows, diversity),
        "coverage": coverage.as_dict() if coverage is not None else None,
        "versions": version_figures(store, rows, version_diversity),
        "throughput": throughput(rows),
        "sampling": experiment.sampling.model_dump(),
        "templates": templates,
        "quality": store.quality.__dict__ | {"disabled": list(store.quality.disabled)},
        **judge_stats(experiment, rows, store.judgments()),
    }
