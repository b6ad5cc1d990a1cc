"""`convogen list`, `show`, `delete`, `undo`, `mark`: look at and clean up what was generated."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from convogen_tui.cli.common import add_experiment_arg, open_experiment, positive_int
from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.judging.judge import current_keys, is_stale
from convogen_tui.core.judging.quality import Verdict
from convogen_tui.core.keeping.records import JudgmentRecord
from convogen_tui.core.keeping.store import ConversationStore, ConversationSummary
from convogen_tui.core.keeping.versions import (
    experiment_texts,
    names_from_first_uses,
    stale_ids,
    version_names,
)
from convogen_tui.core.making.experiment import Experiment, find_experiments, load_experiment
from convogen_tui.core.persona import persona_label


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("list", help="experiments with their counts")
    parser.add_argument(
        "list_root", nargs="?", type=Path, metavar="ROOT", help="datasets folder (default --root)"
    )
    parser.set_defaults(func=run_list)

    show = subparsers.add_parser(
        "show", help="one conversation and its twin, or the experiment's conversations"
    )
    add_experiment_arg(show)
    show.add_argument("id", nargs="?", help="conversation id (a unique prefix is enough)")
    show.add_argument(
        "--json", action="store_true", help="one JSON object per line (with ID: the whole pair)"
    )
    show.set_defaults(func=run_show)

    delete = subparsers.add_parser(
        "delete", help="move conversations and their twins to the trash (undo brings them back)"
    )
    add_experiment_arg(delete)
    delete.add_argument("ids", nargs="+", metavar="ID")
    delete.set_defaults(func=run_delete)

    undo = subparsers.add_parser(
        "undo",
        help="restore the last deleted conversations (latest delete first; --list shows them all)",
        description="Each delete is one trash batch, numbered in the order of the deletes. undo "
        "restores the latest batch; run it again (or pass --steps N) to go further back.",
    )
    add_experiment_arg(undo)
    undo.add_argument("--list", action="store_true", help="list the trash batches, latest first")
    undo.add_argument(
        "--steps", "-n", type=positive_int, default=1, metavar="N", help="restore the latest N batches"
    )
    undo.add_argument("--batch", metavar="NAME", help="restore this batch (a name from --list)")
    undo.set_defaults(func=run_undo)

    mark = subparsers.add_parser("mark", help="flag a conversation for review, or mark it kept")
    add_experiment_arg(mark)
    mark.add_argument("id")
    mark.add_argument("mark", choices=["flagged", "kept", "none"])
    mark.add_argument("--note", help="why")
    mark.set_defaults(func=run_mark)


def run_list(args: argparse.Namespace) -> int:
    root = args.list_root or args.root
    experiments = find_experiments(root)
    if not experiments:
        print(f"no experiments under {root} (looked for */expt-setup.json and inst-templates/*/)")
        return 1
    print(
        f"{'experiment':24} {'ok':>3} {'convs':>6} {'restyled':>8} {'flagged':>7} {'w/flags':>7} {'trash':>6}"
        f" {'stale':>5}"
    )
    unreadable: list[str] = []
    for path in experiments:
        experiment = load_experiment(path)
        store = ConversationStore(path)
        listing = store.scan()
        rows = listing.rows
        flagged = sum(1 for r in rows if r.mark == "flagged")
        with_flags = sum(1 for r in rows if r.flags)
        mark = "yes" if experiment.ok else "NO"
        bad = f"  {len(listing.unreadable)} unreadable" if listing.unreadable else ""
        stale = len(stale_ids(rows, experiment_texts(experiment)))
        print(
            f"{experiment.name:24} {mark:>3} {len(rows):>6} {store.count_restyled():>8} "
            f"{flagged:>7} {with_flags:>7} {store.trash_count():>6} {stale:>5}{bad}"
        )
        unreadable += [str(p) for p in listing.unreadable]
    for line in unreadable:
        print(f"unreadable: {line}", file=sys.stderr)
    return 0


def run_show(args: argparse.Namespace) -> int:
    experiment = open_experiment(args, require_ok=False)
    store = ConversationStore(experiment.dir)
    if args.json:
        return _show_json(experiment, store, args.id)
    if not args.id:
        return _show_listing(args, store)
    conv_id = store.find(args.id)
    record, twin = store.load(conv_id)
    print(f"id: {conv_id}")
    print(f"tweet {record.tweet_id}: {record.tweet}")
    print(f"persona: {persona_label(record.motivation_name, record.disposition_name)}")
    rows = store.list()
    row = next((r for r in rows if r.id == conv_id), None)
    if row is not None:
        name = version_names(store.dir, rows).get(row.version, "?")
        print(f"version: {name} (conv-gen.txt sha256 {row.template_sha256[:12] or 'not recorded'})")
    verdicts = store.judge(record, twin)
    if row is not None and row.near_duplicate_of:
        verdicts.append(Verdict("near-duplicate", f"nearly the same as {row.near_duplicate_of}"))
    print("quality: " + ("no flags" if not verdicts else f"{len(verdicts)} flag(s)"))
    for verdict in verdicts:
        print(f"  {verdict}")
    for line in _judge_lines(experiment, store.load_judgment(conv_id)):
        print(line)
    print("\n--- conversation ---")
    print(record.conv)
    print("\n--- restyled ---")
    print(twin.restyled_conv if twin else "(not restyled yet: convogen restyle EXPT)")
    return 0


def _show_listing(args: argparse.Namespace, store: ConversationStore) -> int:
    """One line per conversation, newest first; the lines are kept beside the index and redone
    only for the conversations that changed (``core.keeping.rendered``)."""
    _, unreadable = store.refresh()
    names = names_from_first_uses(store.dir, store.version_first_uses())
    judged = store.judged_ids()
    minutes: dict[int, str] = {}  # rows made in the same minute share their time text

    def render(row: ConversationSummary) -> str:
        minute = int(row.created_at // 60)
        created = minutes.get(minute)
        if created is None:
            created = minutes[minute] = time.strftime("%Y-%m-%d %H:%M", time.localtime(row.created_at))
        flags = ",".join([*([row.mark] if row.mark else []), *row.flags]) or "-"
        judgment = None
        if row.id in judged:
            with contextlib.suppress(ConvogenError):
                judgment = store.load_judgment(row.id)
        return (
            f"{row.id[:8]}  {created}  {names.get(row.version, '?'):>4}  {row.tweet_id:>20}  "
            f"{row.persona:28}  turns={row.turns:<2} {_judge_cell(judgment)}{flags}"
        )

    # what the lines show besides the rows: version names, judgments, the clock's zone
    stamp = store.judgments_stamp() or f"changing {time.time_ns()}"  # too recent to trust: no reuse
    key = json.dumps([sorted(names.items()), stamp, time.tzname, time.timezone, time.daylight])
    lines = store.rendered("show", key, render)
    count = len(lines)
    lines += [f"UNREADABLE  {problem}" for problem in unreadable]
    if lines:  # one write: stdout redacts each write, and 100,000 small ones cost seconds
        print("\n".join(lines))
    bad = f", {len(unreadable)} unreadable (listed above)" if unreadable else ""
    print(f"{count} conversation(s){bad}; show one with: convogen show {args.experiment} ID")
    return 0


def _judge_cell(judgment: JudgmentRecord | None) -> str:
    """The listing's judge column: the lowest score, or judge-failed; nothing when not judged."""
    if judgment is None:
        return ""
    return "judge-failed " if judgment.failed else f"judge={judgment.lowest} "


def _judge_lines(experiment: Experiment, judgment: JudgmentRecord | None) -> list[str]:
    if judgment is None:
        return (
            ["judge: not judged (convogen judge EXPT)"] if experiment.setup and experiment.setup.judge else []
        )
    stale = (
        " (stale: judge.txt or the criteria changed; convogen judge --again)"
        if is_stale(judgment, current_keys(experiment))
        else ""
    )
    if judgment.failed:
        return [f"judge: judge-failed: {judgment.reason}{stale}"]
    scores = " · ".join(f"{name} {score}" for name, score in judgment.scores.items())
    return [f"judge: {scores}{stale}", f"  {judgment.rationale}"]


def judge_json(experiment: Experiment, judgment: JudgmentRecord | None) -> dict[str, Any]:
    """`show --json`'s judge keys: the scores (None: not judged or judge-failed), why it failed, stale."""
    if judgment is None:
        return {"judge": None, "judge_failed": None, "judge_stale": False}
    return {
        "judge": None if judgment.failed else dict(judgment.scores),
        "judge_failed": judgment.reason if judgment.failed else None,
        "judge_stale": is_stale(judgment, current_keys(experiment)),
    }


def summary_json(row: ConversationSummary, names: dict[str, str]) -> dict[str, Any]:
    """What `show --json` prints per conversation (``names``: version id -> v1, v2...)."""
    return {
        "version": names.get(row.version),
        "templates": {
            "conv-gen": row.template_sha256 or None,
            "conv-restyle": row.restyle_template_sha256 or None,
        },
        "id": row.id,
        "tweet_id": row.tweet_id,
        "persona": row.persona,
        "motivation": row.motivation,
        "disposition": row.disposition,
        "turns": row.turns,
        "flags": row.flags,
        "mark": row.mark,
        "restyled": row.restyled,
        "near_duplicate_of": row.near_duplicate_of or None,
        "created_at": row.created_at,
        "length": row.length,
        "words": row.words,
        "mtld": row.mtld,
        "model": row.model,
    }


def _show_json(experiment: Experiment, store: ConversationStore, prefix: str | None) -> int:
    """Every conversation as a JSON line, newest first; with an id, that one with its texts."""
    rows = store.list()
    names = version_names(store.dir, rows)
    judgments = store.judgments()
    if prefix:
        conv_id = store.find(prefix)
        record, twin = store.load(conv_id)
        row = next(r for r in rows if r.id == conv_id)
        judgment = judgments.get(conv_id)
        data = (
            summary_json(row, names)
            | judge_json(experiment, judgment)
            | {
                "rationale": judgment.rationale if judgment else None,
                "tweet": record.tweet,
                "conv": record.conv,
                "restyled_conv": twin.restyled_conv if twin else None,
                "verdicts": [{"rule": v.rule, "detail": v.detail} for v in store.judge(record, twin)],
            }
        )
        print(json.dumps(data, ensure_ascii=False))
        return 0
    if rows:  # one write (see run_show)
        lines = (summary_json(row, names) | judge_json(experiment, judgments.get(row.id)) for row in rows)
        print("\n".join(json.dumps(line, ensure_ascii=False) for line in lines))
    return 0


def run_delete(args: argparse.Namespace) -> int:
    experiment = open_experiment(args, require_ok=False)
    store = ConversationStore(experiment.dir)
    ids = [store.find(i) for i in args.ids]
    batch = store.delete(ids)
    print(
        f"moved {len(ids)} conversation(s) to {experiment.trash_dir / batch}; "
        f"undo with: convogen undo {args.experiment}"
    )
    return 0


def run_undo(args: argparse.Namespace) -> int:
    experiment = open_experiment(args, require_ok=False)
    store = ConversationStore(experiment.dir)
    if args.list:
        batches = store.batches()
        if not batches:
            print("the trash is empty: nothing to undo")
        for batch in reversed(batches):
            print(batch.describe())
        return 0
    if args.batch:
        restored = store.undo(args.batch)
        print(f"restored {len(restored)} conversation(s) from {args.batch}: {_short_ids(restored)}")
        return 0
    for step in range(args.steps):
        latest = store.batches()
        if not latest:
            if step == 0:
                store.undo()  # raises the "trash is empty" message
            print(f"the trash is empty after {step} step(s)")
            break
        batch = latest[-1]
        restored = store.undo(batch.name)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(batch.deleted_at))
        ids = _short_ids(restored)
        print(f"restored {len(restored)} conversation(s) deleted at {when} (#{batch.seq}): {ids}")
    left = len(store.batches())
    if left:
        print(f"{left} older delete(s) left in the trash; undo again to go further back (--list shows them)")
    return 0


def _short_ids(ids: list[str]) -> str:
    return " ".join(i[:8] for i in ids)


def run_mark(args: argparse.Namespace) -> int:
    experiment = open_experiment(args, require_ok=False)
    store = ConversationStore(experiment.dir)
    conv_id = store.find(args.id)
    store.set_mark(conv_id, "" if args.mark == "none" else args.mark, args.note)
    print(f"{conv_id[:8]}: {args.mark}")
    return 0
