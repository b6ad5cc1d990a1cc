"""The dataset card (README.md) of an exported dataset: how it was made and what is in it.

Hugging Face reads the YAML header (the Parquet files as the ``train`` split); people read the rest:
model and fingerprint, sampling, template hashes, counts, flag rates, diversity and coverage.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from convogen_tui import __version__
from convogen_tui.core.judging.export import SKIP_REASONS, ExportReport
from convogen_tui.core.judging.quality import RULES


def dataset_card(
    name: str,
    stats: dict[str, Any],
    samplings: Sequence[dict[str, Any]],
    selection: str,
    report: ExportReport,
) -> str:
    """Markdown with a YAML header; ``stats`` is :func:`convogen_tui.core.judging.stats.experiment_stats` of
    the exported conversations (coverage is the whole experiment's). Its counts of rows written,
    unparsed and not written come from the export's own report, as the CLI's summary does."""
    written = report.written
    lines = [
        "---",
        f"pretty_name: {json.dumps(f'ConvoGen conversations: {name}')}",
        "tags:",
        "- synthetic",
        "- conversations",
        "- misinformation",
        "- convogen",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        "    path: data/train-*.parquet",
        "---",
        "",
        f"# ConvoGen conversations: {name}",
        "",
        f"Synthetic conversations between SocBot and the User who posted a seed message, written by a "
        f"local model with ConvoGen {__version__} and restyled as reply threads. {written} conversations "
        f"({selection}).",
        "",
        "Load with `datasets.load_from_disk(PATH)` (the Arrow files here), or the Parquet files under "
        '`data/` with `datasets.load_dataset("parquet", data_files="PATH/data/*.parquet")`, pandas or '
        "DuckDB.",
        "",
        "## Generation",
        "",
        "| model | fingerprint | conversations |",
        "| --- | --- | --- |",
    ]
    throughput = stats["throughput"]
    for model in throughput["models"] or [{"name": "?", "fingerprint": "", "conversations": 0}]:
        lines.append(
            f"| {model['name'] or '?'} | `{model['fingerprint'] or '-'}` | {model['conversations']} |"
        )
    lines += ["", "Sampling (from the files' provenance):", ""]
    for sampling in samplings or [stats.get("sampling", {})]:
        lines.append(f"- `{json.dumps(sampling, sort_keys=True)}`")
    lines += ["", "Templates (sha256 of the text each conversation was made with):", ""]
    for kind, hashes in stats["templates"].items():
        for digest in hashes or ["(not recorded)"]:
            lines.append(f"- {kind}: `{digest}`")
    lines += [
        "",
        f"Tokens: {throughput['completion_tokens']} generated, {throughput['restyle_tokens']} restyled; "
        f"{throughput['tokens_per_second']} tok/s over {throughput['wall_hours']} h "
        f"({throughput['gpu_hours']} GPU-hours).",
        "",
        "## Counts",
        "",
        "| | count |",
        "| --- | --- |",
        f"| conversations | {stats['conversations']} |",
        f"| restyled | {stats['restyled']} |",
        f"| without quality flags | {stats['clean']} |",
        f"| marked kept | {stats['marks']['kept']} |",
        f"| marked flagged | {stats['marks']['flagged']} |",
        f"| near-duplicates | {stats['near_duplicates']} |",
    ]
    for rule, n in sorted(report.unparsed.items()):
        lines.append(f"| turns not parsed, conv only (parsed: false; {rule}) | {n} |")
    for reason, n in sorted(report.skipped.items()):
        lines.append(f"| asked for but not written ({SKIP_REASONS.get(reason, reason)}) | {n} |")
    turns = stats["turns"]
    lines += [
        f"| turns (mean / min / max) | {turns['mean']} / {turns['min']} / {turns['max']} |",
        f"| characters (mean) | {stats['length_chars']['mean']} |",
        "",
        "## Quality flags",
        "",
        "Rules are explained by `convogen quality --rules`.",
        "",
        "| rule | checks | count | rate |",
        "| --- | --- | --- | --- |",
    ]
    for rule in RULES:
        flag = stats["flags"][rule.name]
        lines.append(f"| {rule.name} | {rule.checks} | {flag['count']} | {flag['rate']:.1%} |")
    lines += [
        "",
        "## Diversity",
        "",
        f"- distinct-1: {stats['distinct_1']}",
        f"- distinct-2: {stats['distinct_2']}",
        f"- MTLD (mean per conversation, threshold 0.72): {stats['mtld']}",
        "",
        "## Coverage (seed x persona grid of the experiment)",
        "",
    ]
    coverage = stats.get("coverage")
    if coverage:
        lines += [
            f"{coverage['cells']} cells ({coverage['seeds']} seeds x {coverage['personas']} personas): "
            f"{coverage['done']} done, {coverage['flagged']} flagged, {coverage['deleted']} deleted, "
            f"{coverage['missing']} missing.",
            "",
            "| persona | done | flagged | deleted | missing |",
            "| --- | --- | --- | --- | --- |",
        ]
        for persona, counts in coverage["by_persona"].items():
            cells = " | ".join(str(counts[state]) for state in ("done", "flagged", "deleted", "missing"))
            lines.append(f"| {persona} | {cells} |")
    else:
        lines.append("(no seed file: coverage unknown)")
    lines += [
        "",
        "## Fields",
        "",
        "`id`, `tweet_id`, `tweet` (the seed), `motivation` and `disposition` (persona names) with their "
        "texts, `conv` (the model's text), `restyled_conv`, `messages` (role/content turns: the post as "
        "user, SocBot as assistant, User as user; empty when the turns cannot be parsed, then `parsed` "
        "is false and `unparsed` names the rule that says why), `turns`, `flags` "
        "(quality rule names), `mark` (review: kept, flagged or empty), `near_duplicate_of`, `model`, "
        "`fingerprint`, `created_at`, and `provenance` / `restyled_provenance` as JSON text.",
        "",
    ]
    return "\n".join(lines)
