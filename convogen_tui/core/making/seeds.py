"""Seed messages: TSV (the original ``tweet_id<TAB>tweet``), CSV and JSONL, read byte for byte.

Text keeps its emoji, CJK, URLs, tabs and newlines (quoted fields may span lines; a lone carriage
return survives too). Bad rows and duplicate ids are reported with their line numbers and skipped,
never silently dropped. ``import_seeds`` also drops rows whose *normalized* text repeats an earlier
row (see ``normalize_text``); ``seed_file_info`` says how big a seed file is and how far its
hydration got.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import shutil
import time
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from convogen_tui.core.errors import ConvogenError, Problem, StorageError
from convogen_tui.core.keeping.files import atomic_write_text, read_user_text, storage_problem

ID_COLUMNS = ("tweet_id", "id")
TEXT_COLUMNS = ("tweet", "text")


@dataclass(frozen=True)
class Seed:
    tweet_id: str
    tweet: str
    line: int = 0
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Duplicate:
    """A row skipped because an earlier row had the same id (``by="id"``) or text (``"text"``)."""

    line: int
    tweet_id: str
    first_line: int
    by: str
    in_existing: bool = False  # first_line is a line of the file appended to, not of the source


@dataclass
class SeedSet:
    path: Path
    seeds: list[Seed]
    problems: list[Problem]
    duplicates: list[Duplicate] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.seeds)

    @property
    def bad(self) -> list[Problem]:
        """Rows that could not be read at all (errors, not duplicate warnings)."""
        return [p for p in self.problems if p.severity == "error"]

    def by_id(self) -> dict[str, Seed]:
        return {s.tweet_id: s for s in self.seeds}


def read_seeds(path: Path | str) -> SeedSet:
    """Read a seed file by its extension (.tsv, .csv, .jsonl/.ndjson); problems are collected."""
    path = Path(path)
    if not path.is_file():
        raise ConvogenError(
            Problem(path, "seed file not found", hint="pass --seeds FILE or set 'seeds' in the setup")
        )
    text = read_user_text(path)  # keeps a carriage return inside a quoted tweet
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        rows, problems = _jsonl_rows(path, text)
    else:
        delimiter = "," if suffix == ".csv" else "\t"
        rows, problems = _delimited_rows(path, text, delimiter)
    seeds, more, duplicates = _dedupe(path, rows)
    return SeedSet(path, seeds, problems + more, duplicates)


def _delimited_rows(
    path: Path, text: str, delimiter: str
) -> tuple[list[tuple[int, dict[str, str]]], list[Problem]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    problems: list[Problem] = []
    try:
        header = next(reader)
    except StopIteration:
        hint = "add a header: tweet_id<TAB>tweet"
        return [], [Problem(path, "empty seed file", line=1, hint=hint)]
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


def jsonl_values(text: str) -> Iterator[tuple[int, object, str]]:
    """Each non-blank line of a JSON Lines text: (line number, its value, "" or why it is no JSON)."""
    # split on "\n" only: str.splitlines would also cut at U+2028 or U+0085 inside a JSON string.
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield number, None, f"invalid JSON: {exc.msg}"
            continue
        yield number, value, ""


def _jsonl_rows(path: Path, text: str) -> tuple[list[tuple[int, dict[str, str]]], list[Problem]]:
    rows: list[tuple[int, dict[str, str]]] = []
    problems: list[Problem] = []
    for number, obj, error in jsonl_values(text):
        if error:
            problems.append(Problem(path, error, line=number))
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


def _dedupe(
    path: Path, rows: list[tuple[int, dict[str, str]]]
) -> tuple[list[Seed], list[Problem], list[Duplicate]]:
    seeds: list[Seed] = []
    problems: list[Problem] = []
    duplicates: list[Duplicate] = []
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
            duplicates.append(Duplicate(line, tweet_id, first_line[tweet_id], "id"))
            continue
        first_line[tweet_id] = line
        skip = ("tweet_id", "tweet", *ID_COLUMNS, *TEXT_COLUMNS)
        extra = {k: v for k, v in row.items() if k not in skip}
        seeds.append(Seed(tweet_id, tweet, line, extra))
    return seeds, problems, duplicates


def format_seed_rows(rows: Iterable[list[str]]) -> str:
    """TSV text for rows, quoted so that ``read_seeds`` gives every field back unchanged.

    The csv module quotes tabs, quotes and "\\n" but not a lone "\\r" when the line ends in "\\n",
    and a reader would then split the row there; such rows are fully quoted instead.
    """
    buffer = io.StringIO(newline="")
    minimal = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    quote_all = csv.writer(buffer, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_ALL)
    for row in rows:
        (quote_all if any("\r" in value for value in row) else minimal).writerow(row)
    return buffer.getvalue()


def write_seeds_tsv(path: Path, seeds: Iterable[Seed], extra_columns: list[str] | None = None) -> None:
    """Write a seed TSV atomically; text with tabs or newlines is quoted so it reads back intact."""
    path = Path(path)
    columns = ["tweet_id", "tweet", *(extra_columns or [])]
    rows = [[s.tweet_id, s.tweet, *(s.extra.get(c, "") for c in columns[2:])] for s in seeds]
    atomic_write_text(path, format_seed_rows([columns, *rows]))


_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_RETWEET = re.compile(r"^rt @\w+:\s*")


def normalize_text(text: str) -> str:
    """The key ``import_seeds`` dedupes on: what a reader would call "the same tweet".

    NFKC, HTML entities decoded (the API sends ``&amp;``), URLs removed (t.co links differ between
    copies of one text), a leading ``RT @name:`` removed, case folded, whitespace collapsed.
    Mentions, hashtags, emoji and punctuation are kept, so replies to different people stay apart.
    """
    text = unicodedata.normalize("NFKC", html.unescape(text)).casefold()
    text = " ".join(_URL.sub(" ", text).split())
    return _RETWEET.sub("", text)


ImportMode = Literal["new", "append", "replace"]


@dataclass
class ImportReport:
    source: Path
    out: Path
    kept: int  # rows written from the source (for --append: rows added)
    duplicates: list[Duplicate]
    bad: list[Problem]
    warnings: list[Problem]
    existing: int = 0  # --append: rows the output file already held (all kept)
    backup: Path | None = None  # --replace: where the previous file was kept

    @property
    def duplicate_ids(self) -> list[Duplicate]:
        return [d for d in self.duplicates if d.by == "id"]

    @property
    def duplicate_texts(self) -> list[Duplicate]:
        return [d for d in self.duplicates if d.by == "text"]


def import_seeds(
    source: Path | str, out: Path | str, *, dedupe_text: bool = True, mode: ImportMode = "new"
) -> ImportReport:
    """Turn a CSV/TSV/JSONL file into a clean seed TSV: one row per id and per normalized text.

    Extra columns are kept (in first-seen order). A row whose text normalizes to nothing (only a
    link) is never treated as a duplicate of another such row: there is nothing to compare.

    An existing output file is never lost: ``mode="new"`` refuses to write onto it, ``"append"``
    keeps every row it has and adds the new ids (a duplicate's ``first_line`` is then its line in
    the output file), ``"replace"`` keeps a backup beside it first.
    """
    source, out = Path(source), Path(out)
    seed_set = read_seeds(source)
    exists = out.is_file() and out.stat().st_size > 0
    existing: list[Seed] = []
    if exists and mode == "new":
        count = len(read_seeds(out).seeds)
        raise ConvogenError(
            Problem(
                out,
                f"already exists with {count} seed(s); importing would replace them",
                hint="pass --append to add the new ids to it, or --replace to overwrite it "
                "and keep the old file as a backup",
            )
        )
    if exists and mode == "append":
        existing = read_seeds(out).seeds
    kept: list[Seed] = []
    duplicates = list(seed_set.duplicates)
    first_line: dict[str, int] = {}
    known_ids = {s.tweet_id: s.line for s in existing}
    known_texts: dict[str, int] = {}
    for seed in existing:
        key = normalize_text(seed.tweet) if dedupe_text else ""
        if key:
            known_texts.setdefault(key, seed.line)
    for seed in seed_set.seeds:
        if seed.tweet_id in known_ids:
            duplicates.append(Duplicate(seed.line, seed.tweet_id, known_ids[seed.tweet_id], "id", True))
            continue
        key = normalize_text(seed.tweet) if dedupe_text else ""
        if key and key in known_texts:
            duplicates.append(Duplicate(seed.line, seed.tweet_id, known_texts[key], "text", True))
            continue
        if key and key in first_line:
            duplicates.append(Duplicate(seed.line, seed.tweet_id, first_line[key], "text"))
            continue
        if key:
            first_line[key] = seed.line
        kept.append(seed)
    columns: dict[str, None] = {}
    for seed in [*existing, *kept]:
        columns.update(dict.fromkeys(seed.extra))
    backup = _backup(out) if exists and mode == "replace" else None
    write_seeds_tsv(out, [*existing, *kept], list(columns))
    duplicates.sort(key=lambda d: d.line)
    warnings = [p for p in seed_set.problems if p.severity != "error"]
    return ImportReport(source, out, len(kept), duplicates, seed_set.bad, warnings, len(existing), backup)


def _backup(path: Path) -> Path:
    """Copy a file to ``NAME.YYYYmmdd-HHMMSS.bak`` beside it (never over an earlier backup)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.{stamp}.bak")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.{stamp}-{n}.bak")
    try:
        shutil.copy2(path, target)
    except OSError as exc:
        raise StorageError.of(exc, storage_problem(exc, path.parent, "keep a backup in")) from None
    return target


def errors_path_for(out: Path | str) -> Path:
    """``seeds.tsv`` -> ``seeds.errors.tsv``: where hydration lists the ids it could not get."""
    out = Path(out)
    stem = out.stem if out.suffix.lower() == ".tsv" else out.name
    return out.with_name(f"{stem}.errors.tsv")


def read_hydration_errors(path: Path | str) -> dict[str, str]:
    """``tweet_id -> reason`` from an errors file; later lines win, a torn last line is skipped."""
    path = Path(path)
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8-sig", newline="") as handle:
        text = handle.read()
    errors: dict[str, str] = {}
    lines = text.split("\n")
    for number, line in enumerate(lines[:-1], start=1):  # the part after the last "\n" is torn
        tweet_id, _, reason = line.rstrip("\r").partition("\t")
        if (number == 1 and tweet_id == "tweet_id") or not tweet_id.strip():
            continue
        errors[tweet_id.strip()] = reason
    return errors


@dataclass
class SeedFileInfo:
    """What the seeds screen shows about one file: size, readable rows, hydration state."""

    path: Path
    exists: bool
    size_bytes: int
    rows: int
    problems: list[Problem]
    errors_path: Path
    failed: int
    ids_total: int | None = None
    pending: int | None = None

    @property
    def hydrated(self) -> int:
        return self.rows


def seed_file_info(path: Path | str, ids: list[str] | None = None) -> SeedFileInfo:
    """Size and hydration state of a seed file; ``ids`` (from ``read_ids``) adds the pending count.

    A missing file is not an error here: before the first hydration it simply has no rows.
    """
    path = Path(path)
    errors_path = errors_path_for(path)
    failed = read_hydration_errors(errors_path)
    if path.is_file():
        seed_set = read_seeds(path)
        size, done = path.stat().st_size, {s.tweet_id for s in seed_set.seeds}
        info = SeedFileInfo(path, True, size, len(seed_set), seed_set.problems, errors_path, 0)
    else:
        done = set()
        info = SeedFileInfo(path, False, 0, 0, [], errors_path, 0)
    info.failed = len(failed.keys() - done)
    if ids is not None:
        unique = set(ids)
        info.ids_total = len(unique)
        info.pending = len(unique - done - failed.keys())
    return info
