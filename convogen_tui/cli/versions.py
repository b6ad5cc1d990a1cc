"""`convogen versions` and `convogen compare`: which texts made which conversations, and did an edit help."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from convogen_tui.cli.common import add_experiment_arg, open_experiment
from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.judging.compare import compare_versions, figure_lines, verdict_line
from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.core.keeping.versions import (
    CURRENT,
    VersionBook,
    VersionEntry,
    changes,
    describe_changes,
    diff_versions,
    experiment_texts,
    version_rows,
)
from convogen_tui.core.making.experiment import Experiment


def register(subparsers: argparse._SubParsersAction) -> None:
    versions = subparsers.add_parser(
        "versions",
        help="the template versions that made the conversations (v1, v2...), their notes and diffs",
        description="Every text that shapes a conversation (templates, persona texts, the setup's "
        "sampling and generation blocks) is kept when a conversation is made with it; each set of "
        "texts is a version, named v1, v2... in order of first use.",
    )
    add_experiment_arg(versions)
    versions.add_argument(
        "--diff", nargs=2, metavar=("A", "B"), help="unified diff of every text that changed from A to B"
    )
    versions.add_argument("--note", nargs=2, metavar=("V", "TEXT"), help="give version V a note")
    versions.add_argument("--json", action="store_true", help="one JSON object per version")
    versions.set_defaults(func=run_versions)

    compare = subparsers.add_parser(
        "compare",
        help="two versions side by side, and an exact paired test over the cells both made",
    )
    add_experiment_arg(compare)
    compare.add_argument("a", metavar="A", help="a version name (v1) or 'current'")
    compare.add_argument("b", metavar="B")
    compare.add_argument("--json", action="store_true", help="one JSON object")
    compare.set_defaults(func=run_compare)


def find_version(experiment: Experiment, book: VersionBook, name: str) -> VersionEntry:
    """A version by name; ``current`` is the texts on disk now (named if already used)."""
    if name == CURRENT:
        _, now = version_rows(book, ConversationStore(experiment.dir).list(), experiment_texts(experiment))
        if now is None:
            raise ConvogenError(Problem(experiment.setup_file, "the current texts cannot be read"))
        return now
    return book.find(name)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def run_versions(args: argparse.Namespace) -> int:
    experiment = open_experiment(args, require_ok=False)
    book = VersionBook(experiment.dir)
    current = experiment_texts(experiment)
    rows, now = version_rows(book, ConversationStore(experiment.dir).list(), current)
    if args.note:
        entry = book.set_note(args.note[0], args.note[1])
        print(f"{entry.name}: {entry.note}")
        return 0
    if args.diff:
        old, new = (find_version(experiment, book, name) for name in args.diff)
        lines = diff_versions(book, old, new, current)
        print("\n".join(lines) if lines else f"{old.name} and {new.name} have the same texts")
        return 0
    if args.json:
        for row in rows:
            print(json.dumps(_row_json(row), ensure_ascii=False))
        return 0
    if not rows:
        print("no versions yet: they are kept when conversations are made")
    else:
        print(f"{'version':9} {'first used':16}  {'last used':16}  {'convs':>5}  note / what changed")
    for row in rows:
        name = row.entry.name + (" *" if row.current else "")
        said = "; ".join(
            part for part in (f'"{row.entry.note}"' if row.entry.note else "", row.changed) if part
        )
        kept = "" if not row.entry.legacy else " (text not kept)" if not _kept(book, row.entry) else " (old)"
        print(
            f"{name:9} {_when(row.first_used):16}  {_when(row.last_used):16}  {row.conversations:>5}  "
            f"{said}{kept}"
        )
    if now is not None and now.name == CURRENT:
        last = rows[-1].entry if rows else None
        if last is None:
            print("current texts: not used yet")
        else:
            since = describe_changes(changes(last, now)) or "nothing"
            print(f"current texts: not used yet ({since} since {last.name}; see --diff {last.name} current)")
    elif now is not None:
        print("* the current texts (conversations of other versions are stale)")
    return 0


def _kept(book: VersionBook, entry: VersionEntry) -> bool:
    return all(book.text(sha) is not None for sha in entry.texts.values()) and bool(entry.texts)


def _row_json(row: Any) -> dict[str, Any]:
    entry = row.entry
    return {
        "version": entry.name,
        "id": entry.id,
        "note": entry.note,
        "conversations": row.conversations,
        "first_used": row.first_used,
        "last_used": row.last_used,
        "changed": row.changed,
        "current": row.current,
        "texts": entry.texts,
    }


def run_compare(args: argparse.Namespace) -> int:
    experiment = open_experiment(args, require_ok=False)
    book = VersionBook(experiment.dir)
    store = ConversationStore(experiment.dir)
    rows = store.list()
    version_rows(book, rows, experiment_texts(experiment))  # names versions first met now
    a, b = (find_version(experiment, book, name) for name in (args.a, args.b))
    result = compare_versions(store, a, b, rows)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    print(render_compare(result))
    return 0


def render_compare(result: dict[str, Any]) -> str:
    a, b = result["a"], result["b"]
    lines = [f"{'':22} {a['version']:>10} {b['version']:>10} {'delta':>10}"]
    lines += [f"{label:22} {x:>10} {y:>10} {d:>10}" for label, x, y, d in figure_lines(result)]
    lines.append(verdict_line(result))
    return "\n".join(lines)
