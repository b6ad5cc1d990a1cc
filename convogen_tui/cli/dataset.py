"""`convogen quality`, `stats` and `export`: from a folder of files to a dataset people can use."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from convogen_tui.cli.common import add_experiment_arg, open_experiment
from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.judging.export import FORMATS, ExportReport, Selection, export_file
from convogen_tui.core.judging.judge import judge_settings
from convogen_tui.core.judging.quality import RULE_NAMES, RULES, explain_rules
from convogen_tui.core.judging.stats import experiment_stats
from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.core.keeping.versions import VersionBook, version_names
from convogen_tui.core.making.experiment import Experiment


def register(subparsers: argparse._SubParsersAction) -> None:
    quality = subparsers.add_parser(
        "quality", help="quality rules: explain them (--rules), or list an experiment's flagged conversations"
    )
    quality.add_argument("experiment", nargs="?", metavar="EXPT", help="experiment folder or name")
    quality.add_argument(
        "--rules", action="store_true", help="explain every rule (with EXPT: the thresholds in force for it)"
    )
    quality.add_argument("--rule", action="append", choices=RULE_NAMES, metavar="RULE", help="only this rule")
    quality.set_defaults(func=run_quality)

    stats = subparsers.add_parser(
        "stats", help="counts, flag rates, turns and lengths, distinct-1/2, MTLD, coverage, tok/s, GPU-hours"
    )
    add_experiment_arg(stats)
    stats.add_argument("--json", action="store_true", help="one JSON object")
    stats.set_defaults(func=run_stats)

    export = subparsers.add_parser(
        "export", help="write the conversations as jsonl, sharegpt, csv or a HF dataset"
    )
    add_experiment_arg(export)
    export.add_argument("--format", required=True, choices=FORMATS)
    export.add_argument(
        "-o", "--output", required=True, type=Path, metavar="PATH", help="file (a folder for hf)"
    )
    export.add_argument(
        "--exclude-flagged",
        action="store_true",
        help="leave out conversations with a quality flag or the flagged mark (a kept mark overrides)",
    )
    export.add_argument("--only-kept", action="store_true", help="only conversations marked kept")
    export.add_argument(
        "--exclude",
        action="append",
        default=[],
        choices=RULE_NAMES,
        metavar="RULE",
        help="leave out this flag",
    )
    export.add_argument(
        "--restyled-only", action="store_true", help="only conversations with a restyled twin"
    )
    export.add_argument("--no-near-duplicates", action="store_true", help="leave out near-duplicates")
    export.add_argument(
        "--min-score",
        action="append",
        default=[],
        type=min_score,
        metavar="CRITERION=N",
        help="only pairs the judge scored at least N on CRITERION (repeatable; convogen judge)",
    )
    export.add_argument(
        "--dialog",
        choices=["conv", "restyled"],
        default="conv",
        help="sharegpt: the turns of the conversation (default) or of its restyled thread",
    )
    export.add_argument(
        "--version", dest="only_version", metavar="V", help="only the conversations of version V (v3)"
    )
    export.add_argument("--force", action="store_true", help="replace PATH if it exists")
    export.add_argument(
        "--push-to-hub",
        metavar="OWNER/NAME",
        help="hf: also upload the card and Parquet files to this Hub dataset (token from HF_TOKEN)",
    )
    export.add_argument("--private", action="store_true", help="with --push-to-hub: create it private")
    export.add_argument(
        "--allow-empty",
        action="store_true",
        help="write the file even when no conversation goes in it (else: exit 1, nothing written)",
    )
    export.set_defaults(func=run_export)


def run_quality(args: argparse.Namespace) -> int:
    if args.rules or not args.experiment:
        settings = None
        if args.experiment:
            settings = ConversationStore(open_experiment(args, require_ok=False).dir).quality
        for rule, tuned in explain_rules(settings):
            print(f"{rule.name:22} [{rule.applies_to}] {rule.checks}")
            if tuned:
                print(f"{'':22} {tuned}")
        print(
            '\ntune them in expt-setup.json: "quality": {"turns": 8, "max_message_chars": 280, '
            '"disabled": ["restyle-emoji"], ...}'
        )
        return 0
    experiment = open_experiment(args, require_ok=False)
    store = ConversationStore(experiment.dir)
    rows = store.list()
    wanted = set(args.rule or RULE_NAMES)
    flagged = [row for row in rows if wanted & set(row.flags)]
    for row in sorted(flagged, key=lambda r: r.created_at):
        try:
            record, twin = store.load(row.id)
        except ConvogenError:
            continue
        details = {v.rule: v.detail for v in store.judge(record, twin)}
        if row.near_duplicate_of:
            details["near-duplicate"] = f"nearly the same as {row.near_duplicate_of[:8]}"
        print(f"{row.id[:8]}  {row.tweet_id}  {row.persona}")
        for flag in row.flags:
            if flag in wanted:
                print(f"    {flag}: {details.get(flag, '')}")
    counts = {rule.name: sum(rule.name in row.flags for row in rows) for rule in RULES}
    summary = ", ".join(f"{name} {n}" for name, n in counts.items() if n and name in wanted) or "none"
    print(f"{len(flagged)} of {len(rows)} conversation(s) flagged: {summary}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    experiment = open_experiment(args, require_ok=False)
    stats = experiment_stats(experiment)
    if args.json:
        print(json.dumps(stats, ensure_ascii=False))
        return 0
    print(render_stats(stats))
    return 0


def render_stats(stats: dict[str, Any]) -> str:
    n = stats["conversations"]
    lines = [
        f"{stats['experiment']}: {n} conversation(s), {stats['restyled']} restyled, {stats['clean']} without "
        f"flags, {stats['marks']['kept']} kept, {stats['marks']['flagged']} marked flagged, "
        f"{stats['near_duplicates']} near-duplicate(s)",
        f"diversity: distinct-1 {stats['distinct_1']:.3f}  distinct-2 {stats['distinct_2']:.3f}  "
        f"MTLD {stats['mtld']:.1f}",
    ]
    coverage = stats["coverage"]
    if coverage:
        lines.append(
            f"coverage: {coverage['cells']} cells "
            f"({coverage['seeds']} seeds x {coverage['personas']} personas): "
            f"{coverage['done']} done, {coverage['flagged']} flagged, {coverage['deleted']} deleted, "
            f"{coverage['missing']} missing"
            + (f", {coverage['outside']} outside the grid" if coverage["outside"] else "")
        )
        for persona, counts in coverage["by_persona"].items():
            lines.append(f"  {persona:30} " + "  ".join(f"{k} {v}" for k, v in counts.items()))
    else:
        lines.append("coverage: unknown (no seed file)")
    turns = stats["turns"]
    lines.append(
        f"turns: mean {turns['mean']} (min {turns['min']}, max {turns['max']})  "
        + " ".join(f"{k}:{v}" for k, v in turns["counts"].items())
    )
    chars = stats["length_chars"]
    lines.append(f"length: mean {chars['mean']} chars (p10 {chars.get('p10', 0)}, p90 {chars.get('p90', 0)})")
    rates = [(rule, f) for rule, f in stats["flags"].items() if f["count"]]
    lines.append(
        "flags: " + ("  ".join(f"{rule} {f['count']} ({f['rate']:.0%})" for rule, f in rates) or "none")
    )
    lines += version_lines(stats)
    lines += _judge_lines(stats)
    t = stats["throughput"]
    lines.append(
        f"tokens: {t['completion_tokens']} generated + {t['restyle_tokens']} restyled, "
        f"{t['tokens_per_second']} tok/s over {t['wall_hours']:.3f} h, {t['gpu_hours']:.3f} GPU-hours"
    )
    return "\n".join(lines)


def _judge_lines(stats: dict[str, Any]) -> list[str]:
    """The judge's means per criterion and the calibration in a sentence, when there is a judge."""
    if not stats.get("judge"):
        return []
    counts = stats["judgments"]
    means = "  ".join(
        f"{name} {c['mean']:.2f}" if c["mean"] is not None else f"{name} -"
        for name, c in stats["judge"].items()
    )
    lines = [
        f"judge: {counts['judged']} judged ({counts['failed']} failed, {counts['stale']} stale); mean {means}"
    ]
    calibration = stats["calibration"]
    if calibration["enough"]:
        mean = calibration["mean"]
        lines.append(
            f"calibration: mean score >= {mean['threshold']:g} says kept, "
            f"kappa {mean['kappa']:.2f} (n {mean['n']})"
        )
    else:
        lines.append(f"calibration: {calibration['note']}")
    return lines


def version_lines(stats: dict[str, Any]) -> list[str]:
    """Per version, when several made the conversations: count, flags, turns against its target."""
    versions = stats.get("versions") or []
    if len(versions) < 2:
        return []
    lines = ["by version:"]
    for v in versions:
        n = v["conversations"]
        lines.append(
            f"  {v['version']:4} {n} conversation(s), {v['with_flags'] / n if n else 0:.0%} with flags, "
            f"turns mean {v['turns']['mean']} (target {v['turns_target']}), "
            f"length mean {v['length_chars']['mean']} chars, distinct-2 {v['distinct_2']:.3f}"
        )
    return lines


def run_export(args: argparse.Namespace) -> int:
    experiment = open_experiment(args, require_ok=False)
    version = None
    if args.only_version:
        book = VersionBook(experiment.dir)
        version_names(experiment.dir, ConversationStore(experiment.dir).list())
        version = book.find(args.only_version)
    selection = Selection(
        version=version.id if version else None,
        version_name=version.name if version else "",
        exclude_flagged=args.exclude_flagged,
        only_kept=args.only_kept,
        exclude_rules=tuple(args.exclude),
        restyled_only=args.restyled_only,
        no_near_duplicates=args.no_near_duplicates,
        min_scores=tuple(args.min_score),
    )
    _check_criteria(experiment, args.min_score)
    output: Path = args.output
    if (args.push_to_hub or args.private) and args.format != "hf":
        raise ConvogenError(Problem(None, "--push-to-hub and --private go with --format hf"))
    if not output.parent.exists():
        raise ConvogenError(Problem(output, "its folder does not exist", hint="create it first"))
    progress = TerminalProgress("exporting") if sys.stderr.isatty() else None
    try:
        if args.format == "hf":
            from convogen_tui.integrations.hf_dataset import export_hf

            report = export_hf(
                experiment, output, selection, args.force, allow_empty=args.allow_empty, progress=progress
            )
        else:
            store = ConversationStore(experiment.dir)
            report = export_file(
                store, args.format, output, selection, args.force, args.dialog, args.allow_empty, progress
            )
    finally:
        if progress is not None:
            progress.close()
    print(export_summary(report, selection))
    if report.skipped:
        print(f"warning: {report.shortfall()}", file=sys.stderr)
    if args.push_to_hub:
        from convogen_tui.integrations.hf_dataset import push_to_hub

        url = push_to_hub(output, args.push_to_hub, args.private)
        print(f"pushed to the Hub as dataset {args.push_to_hub}{' (private)' if args.private else ''}: {url}")
    return 0


class TerminalProgress:
    """``exporting 1,234/100,000`` on one terminal line, redrawn at most ten times a second."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._drawn = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - self._drawn >= 0.1:
            self._drawn = now
            sys.stderr.write(f"\r{self.what} {done:,}/{total:,}")
            sys.stderr.flush()

    def close(self) -> None:
        if self._drawn:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def min_score(text: str) -> tuple[str, int]:
    """argparse type for --min-score CRITERION=N."""
    name, _, number = text.partition("=")
    try:
        return name.strip(), int(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not CRITERION=N (for example civility=3)") from None


def _check_criteria(experiment: Experiment, wanted: list[tuple[str, int]]) -> None:
    """A --min-score criterion the setup does not judge is a typo: say which ones exist."""
    if not wanted:
        return
    names = judge_settings(experiment).names
    unknown = [name for name, _ in wanted if name not in names]
    if unknown:
        raise ConvogenError(
            Problem(
                experiment.setup_file,
                f"--min-score: no criterion '{unknown[0]}'",
                key="judge.criteria",
                hint=f"the criteria are {', '.join(names)}",
            )
        )


def export_summary(report: ExportReport, selection: Selection) -> str:
    line = (
        f"wrote {report.written} conversation(s) to {report.path} ({report.format}; {selection.describe()})"
    )
    if report.excluded:
        line += f"; {report.excluded} of {report.total} left out by the selection"
    if report.unparsed:
        reasons = ", ".join(f"{rule} {n}" for rule, n in sorted(report.unparsed.items()))
        what = "without messages" if report.format == "hf" else "as one text field"
        line += f"; {report.unparsed_total} {what} (parsed: false): turns cannot be parsed ({reasons})"
    if report.skipped:
        line += f"; {report.shortfall()}"
    return line
