"""`convogen seeds`: hydrate tweet ids through the X API, import and clean seed files, inspect one.

Thin: the work is in ``convogen_tui.core.making.seeds`` and ``convogen_tui.integrations.x_api``; this
module turns their events into a progress bar (on a terminal) or plain lines (in a log).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from convogen_tui.cli.common import non_negative_int
from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.making.seeds import import_seeds, seed_file_info

MAX_LISTED = 10


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "seeds",
        help="hydrate tweet ids, import and clean seed files",
        description="Make seed files: fetch tweet text for ids through the X API (hydrate), "
        "turn CSV/TSV/JSONL into a clean seed TSV (import), or inspect a seed file (info).",
    )
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])
    commands = parser.add_subparsers(dest="seeds_command", metavar="SUBCOMMAND")

    hydrate = commands.add_parser(
        "hydrate",
        help="fetch tweet text for ids through the X API",
        description="Fetch the text of tweet ids with the X API v2 (100 ids a request) into a "
        "tweet_id<TAB>tweet TSV; ids it cannot get go to OUT.errors.tsv with the API's reason. "
        "Resumable: a rerun skips ids already in either file. The bearer token is read from "
        "$X_BEARER_TOKEN (or $TWITTER_BEARER_TOKEN); $CONVOGEN_X_API_URL changes the API's URL.",
    )
    hydrate.add_argument(
        "ids", type=Path, metavar="IDS", help="one id a line, or a TSV/CSV with a tweet_id column"
    )
    hydrate.add_argument("-o", "--out", type=Path, required=True, metavar="OUT.tsv")
    hydrate.add_argument(
        "--retry-errors", action="store_true", help="ask again for ids listed in OUT.errors.tsv"
    )
    hydrate.add_argument(
        "--retries",
        type=non_negative_int,
        default=5,
        metavar="N",
        help="retries after a network or server error, with backoff (default 5)",
    )
    hydrate.set_defaults(func=run_hydrate)

    imp = commands.add_parser(
        "import",
        help="turn a CSV/TSV/JSONL file into a clean seed TSV",
        description="Read a CSV, TSV or JSONL file with tweet_id (or id) and tweet (or text) "
        "fields and write a seed TSV with one row per id and per normalized text (case, spacing, "
        "URLs, HTML entities and a leading 'RT @name:' ignored). Reports kept, duplicate and bad "
        "rows with their line numbers.",
    )
    imp.add_argument("file", type=Path, metavar="FILE")
    imp.add_argument("-o", "--out", type=Path, required=True, metavar="OUT.tsv")
    imp.add_argument(
        "--keep-same-text",
        action="store_true",
        help="dedupe by id only, keep rows whose text repeats",
    )
    existing = imp.add_mutually_exclusive_group()
    existing.add_argument(
        "--append",
        action="store_true",
        help="OUT exists: keep its rows and add the new ids (deduped by id, and by text unless "
        "--keep-same-text)",
    )
    existing.add_argument(
        "--replace",
        action="store_true",
        help="OUT exists: overwrite it, keeping the old file as OUT.<time>.bak",
    )
    imp.set_defaults(func=run_import)

    info = commands.add_parser("info", help="rows, problems and hydration state of a seed file")
    info.add_argument("file", type=Path, metavar="FILE")
    info.add_argument(
        "--ids",
        type=Path,
        metavar="IDS",
        help="the id file it is hydrated from, to count the ids still pending",
    )
    info.set_defaults(func=run_info)


# ----------------------------------------------------------------------------------------- import


def run_import(args: argparse.Namespace) -> int:
    mode = "append" if args.append else "replace" if args.replace else "new"
    report = import_seeds(args.file, args.out, dedupe_text=not args.keep_same_text, mode=mode)
    for problem in report.bad[:MAX_LISTED]:
        print(f"convogen: {problem}", file=sys.stderr)
    _more(len(report.bad), sys.stderr)
    dup_ids, dup_texts = report.duplicate_ids, report.duplicate_texts
    for dup in report.duplicates[:MAX_LISTED]:
        what = "id" if dup.by == "id" else "text"
        where = f"{report.out.name} line" if dup.in_existing else "line"
        print(
            f"{report.source}:{dup.line}: duplicate {what} of {where} {dup.first_line} "
            f"(tweet_id {dup.tweet_id}); skipped",
            file=sys.stderr,
        )
    _more(len(report.duplicates), sys.stderr)
    kept = f"kept {report.kept}"
    if mode == "append":
        kept = f"kept the {report.existing} seeds already there, added {report.kept}"
    print(
        f"{report.out}: {kept}, duplicate {len(report.duplicates)} "
        f"({len(dup_ids)} by id, {len(dup_texts)} by text), bad {len(report.bad)}"
        + (f"; the previous file is kept as {report.backup}" if report.backup else "")
    )
    return 0


# ------------------------------------------------------------------------------------------- info


def run_info(args: argparse.Namespace) -> int:
    ids = None
    if args.ids is not None:
        from convogen_tui.integrations.x_api import read_ids

        ids = read_ids(args.ids).ids
    info = seed_file_info(args.file, ids)
    if not info.exists:
        print(f"{info.path}: not written yet")
    else:
        print(f"{info.path}: {info.rows} seeds, {_size(info.size_bytes)}")
    for problem in info.problems[:MAX_LISTED]:
        print(f"  {problem}")
    _more(len(info.problems), sys.stdout)
    if info.errors_path.exists():
        print(f"{info.errors_path}: {info.failed} ids could not be hydrated")
    if info.ids_total is not None:
        print(
            f"hydration: {info.rows} of {info.ids_total} ids hydrated, {info.failed} failed, "
            f"{info.pending} pending"
        )
    return 0


def _size(size: int) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return str(size)


def _more(count: int, stream: TextIO) -> None:
    if count > MAX_LISTED:
        print(f"  ... and {count - MAX_LISTED} more", file=stream)


# ---------------------------------------------------------------------------------------- hydrate


def run_hydrate(args: argparse.Namespace) -> int:
    from convogen_tui.integrations import x_api

    ids = x_api.read_ids(args.ids)
    bad = [p for p in ids.problems if p.severity == "error"]
    if not ids.ids:
        hint = "one id a line, or a TSV/CSV with a tweet_id column"
        raise ConvogenError(Problem(ids.path, "no tweet ids found", hint=hint), bad)
    for problem in bad[:MAX_LISTED]:
        print(f"convogen: {problem}", file=sys.stderr)
    _more(len(bad), sys.stderr)
    view = _ProgressView(sys.stderr)
    try:
        report = x_api.hydrate(
            ids,
            args.out,
            on_event=view.on_event,
            retry_errors=args.retry_errors,
            retries=max(args.retries, 0),
        )
    except KeyboardInterrupt:
        view.close()
        print(
            f"convogen: interrupted; the text fetched so far is saved in {args.out}; "
            "rerun the same command to go on",
            file=sys.stderr,
        )
        return 130
    finally:
        view.close()
    p = report.progress
    reasons = ", ".join(f"{kind} {n}" for kind, n in sorted(report.reasons.items()))
    print(
        f"{report.out}: {p.hydrated} of {p.total} ids hydrated ({p.fetched_now} in this run), "
        f"{p.failed} failed -> {report.errors_path.name}"
        + (f" ({reasons} in this run)" if reasons else "")
        + f", {p.pending} pending; {p.requests} requests"
        + (f", {report.rate_limit_waits} rate-limit waits" if report.rate_limit_waits else "")
        + (f"; {len(bad)} lines of {ids.path.name} were not ids" if bad else "")
    )
    return 0


class _ProgressView:
    """A rich progress bar on a terminal; a line per batch and per wait elsewhere (logs, CI)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.progress: Any = None
        self.task: Any = None
        self.last_wait_line = 0.0
        self.wait_until = 0.0

    def on_event(self, event: Any) -> None:
        from convogen_tui.integrations import x_api

        if isinstance(event, x_api.HydrateStarted):
            p = event.progress
            if self.tty:
                self._start_bar(p)
            else:
                self._line(
                    f"hydrate: {p.total} ids, {p.hydrated} already hydrated, "
                    f"{p.failed} already failed, {p.pending} to fetch"
                )
        elif isinstance(event, x_api.BatchDone):
            p = event.progress
            if self.tty:
                self.progress.update(
                    self.task, completed=p.done, description="hydrating", counts=self._counts(p)
                )
            else:
                self._line(f"hydrate: {p.done}/{p.total} ({self._counts(p)})")
        elif isinstance(event, x_api.Waiting):
            text = f"{event.reason}: waiting {event.seconds_left} s"
            if self.tty:
                self.progress.update(self.task, description=text)
            elif event.until != self.wait_until or time.monotonic() - self.last_wait_line >= 30:
                until = time.strftime("%H:%M:%S", time.localtime(event.until))
                self._line(f"hydrate: {text} (until {until}) {event.detail}".rstrip())
                self.wait_until, self.last_wait_line = event.until, time.monotonic()

    @staticmethod
    def _counts(p: Any) -> str:
        return f"hydrated {p.hydrated}, failed {p.failed}, pending {p.pending}"

    def _start_bar(self, p: Any) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeRemainingColumn(),
            console=Console(file=self.stream),
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "hydrating", total=p.total, completed=p.done, counts=self._counts(p)
        )

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
