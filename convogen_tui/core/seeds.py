"""Seed messages: TSV (the original ``tweet_id<TAB>tweet``), CSV and JSONL, read byte for byte.

Text keeps its emoji, CJK, URLs and newlines (quoted fields may span lines). Bad rows and duplicate
ids are reported with their line numbers and skipped, never silently dropped.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.files import atomic_write_text

ID_COLUMNS = ("tweet_id", "id")
TEXT_COLUMNS = ("tweet", "text")


@dataclass(frozen=True)
class Seed:
    tweet_id: str
    tweet: str
    line: int = 0
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class SeedSet:
    path: Path
    seeds: list[Seed]
    problems: list[Problem]

    def __len__(self) -> int:
        return len(self.seeds)

    def by_id(self) -> dict[str, Seed]:
        return {s.tweet_id: s for s in self.seeds}


def read_seeds(path: Path | str) -> SeedSet:
    """Read a seed file by its extension (.tsv, .csv, .jsonl/.ndjson); problems are collected."""
    path = Path(path)
    if not path.is_file():
        raise ConvogenError(
            Problem(path, "seed file not found", hint="pass --seeds FILE or set 'seeds' in the setup")
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConvogenError(
            Problem(path, f"not UTF-8 text at byte {exc.start}", hint="save the file as UTF-8")
        ) from None
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        rows, problems = _jsonl_rows(path, text)
    else:
        delimiter = "," if suffix == ".csv" else "\t"
        rows, problems = _delimited_rows(path, text, delimiter)
    seeds, more = _dedupe(path, rows)
    return SeedSet(path, seeds, problems + more)


def _delimited_rows(
    path: Path, text: str, delimiter: str
) -> tuple[list[tuple[int, dict[str, str]]], list[Problem]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    problems: list[Problem] = []
    try:
        header = next(reader)
    except StopIteration:
        return [], [Problem(path, "empty seed file", line=1, hint="add a header: tweet_id<TAB>tweet")]
    header = [h.strip() for h in header]
    id_col = next((c for c in ID_COLUMNS if c in header), None)
    text_col = next((c for c in TEXT_COLUMNS if c in header), None)
    if id_col is None or text_col is None:
        sep = "<TAB>" if delimiter == "\t" else ","
        raise ConvogenError(
            Problem(
                path,
                f"header {header!r} lacks a 'tweet_id' and a 'tweet' column",
                line=1,
                hint=f"the first line must be tweet_id{sep}tweet",
            )
        )
    rows: list[tuple[int, dict[str, str]]] = []
    line = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(Problem(path, f"unreadable row: {exc}", line=line))
            break
        start, line = line, reader.line_num + 1
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            problems.append(
                Problem(
                    path,
                    f"row has {len(values)} fields, the header has {len(header)}",
                    line=start,
                    hint="quote text that holds the separator",
                )
            )
            continue
        row = dict(zip(header, values, strict=True))
        rows.append((start, {"tweet_id": row[id_col], "tweet": row[text_col], **row}))
    return rows, problems


def _jsonl_rows(path: Path, text: str) -> tuple[list[tuple[int, dict[str, str]]], list[Problem]]:
    rows: list[tuple[int, dict[str, str]]] = []
    problems: list[Problem] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(Problem(path, f"invalid JSON: {exc.msg}", line=number))
            continue
        if not isinstance(obj, dict):
            problems.append(Problem(path, "each line must be a JSON object", line=number))
            continue
        tweet_id = next((obj[c] for c in ID_COLUMNS if c in obj), None)
        tweet = next((obj[c] for c in TEXT_COLUMNS if c in obj), None)
        extra = {k: v if isinstance(v, str) else json.dumps(v) for k, v in obj.items()}
        rows.append(
            (
                number,
                {
                    **extra,
                    "tweet_id": "" if tweet_id is None else str(tweet_id),
                    "tweet": "" if tweet is None else str(tweet),
                },
            )
        )
    return rows, problems


def _dedupe(path: Path, rows: list[tuple[int, dict[str, str]]]) -> tuple[list[Seed], list[Problem]]:
    seeds: list[Seed] = []
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    for line, row in rows:
        tweet_id = row["tweet_id"].strip()
        tweet = row["tweet"]
        if not tweet_id:
            problems.append(Problem(path, "row has no tweet_id", line=line))
            continue
        if not tweet.strip():
            problems.append(Problem(path, f"tweet {tweet_id} has no text", line=line))
            continue
        if tweet_id in first_line:
            problems.append(
                Problem(
                    path,
                    f"duplicate tweet_id {tweet_id} (first on line {first_line[tweet_id]}); skipped",
                    line=line,
                    severity="warning",
                )
            )
            continue
        first_line[tweet_id] = line
        extra = {k: v for k, v in row.items() if k not in ("tweet_id", "tweet", *ID_COLUMNS, *TEXT_COLUMNS)}
        seeds.append(Seed(tweet_id, tweet, line, extra))
    return seeds, problems


def write_seeds_tsv(path: Path, seeds: Iterable[Seed], extra_columns: list[str] | None = None) -> None:
    """Write a seed TSV atomically; text with tabs or newlines is quoted so it reads back intact."""
    path = Path(path)
    columns = ["tweet_id", "tweet", *(extra_columns or [])]
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(columns)
    for seed in seeds:
        writer.writerow([seed.tweet_id, seed.tweet, *(seed.extra.get(c, "") for c in columns[2:])])
    atomic_write_text(path, buffer.getvalue())
