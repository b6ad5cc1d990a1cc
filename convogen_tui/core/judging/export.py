"""Export an experiment as one dataset file: JSON Lines, ShareGPT or CSV (Hugging Face datasets lives
in ``integrations.hf_dataset``, which builds on the rows made here).

Every format is written whole to a temporary file and renamed into place, so an interrupted export
leaves nothing half-written, and an existing output is never replaced without ``force``.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.judging.dialog import SOCBOT, USER, Dialog, Message, parse_dialog
from convogen_tui.core.keeping.files import atomic_write_text
from convogen_tui.core.keeping.records import ConversationRecord, JudgmentRecord, RestyledRecord
from convogen_tui.core.keeping.store import ConversationStore, ConversationSummary
from convogen_tui.core.keeping.versions import version_names

Format = Literal["jsonl", "sharegpt", "csv", "hf"]
FORMATS: tuple[Format, ...] = ("jsonl", "sharegpt", "csv", "hf")
CSV_COLUMNS = [
    "id", "tweet_id", "tweet", "motivation", "disposition", "conv", "restyled_conv", "turns", "flags",
    "mark", "near_duplicate_of", "model", "fingerprint", "created_at", "version", "judge_scores",
    "judge_lowest",
]  # fmt: skip


@dataclass(frozen=True)
class Selection:
    """Which conversations go out: every one by default, each with its flags and mark."""

    exclude_flagged: bool = False  # no conversation with a quality flag or the flagged mark (kept wins)
    only_kept: bool = False
    exclude_rules: tuple[str, ...] = ()  # no conversation with one of these flags (kept wins)
    restyled_only: bool = False
    no_near_duplicates: bool = False
    version: str | None = None  # only the conversations of this version id (core.keeping.versions)
    version_name: str = ""
    min_scores: tuple[tuple[str, int], ...] = ()  # (criterion, N): only pairs the judge scored >= N

    def admits_scores(self, judgment: JudgmentRecord | None) -> bool:
        """Every --min-score holds (a pair not judged, or judge-failed, has no score to hold)."""
        if not self.min_scores:
            return True
        if judgment is None or judgment.failed:
            return False
        return all(judgment.scores.get(name, -1) >= least for name, least in self.min_scores)

    def admits(self, row: ConversationSummary) -> bool:
        if self.version is not None and row.version != self.version:
            return False
        if self.only_kept and row.mark != "kept":
            return False
        if self.restyled_only and not row.restyled:
            return False
        kept = row.mark == "kept"
        if self.exclude_flagged and not kept and (row.flags or row.mark == "flagged"):
            return False
        if self.exclude_rules and not kept and set(self.exclude_rules) & set(row.flags):
            return False
        return not (self.no_near_duplicates and row.near_duplicate_of and not kept)

    def describe(self) -> str:
        """The selection in words, for the dataset card and the summary line."""
        parts = []
        if self.version is not None:
            parts.append(f"only version {self.version_name or self.version[:12]}")
        if self.only_kept:
            parts.append("only those marked kept")
        if self.exclude_flagged:
            parts.append("without quality flags or the flagged mark, unless kept")
        if self.exclude_rules:
            parts.append(f"without {', '.join(self.exclude_rules)}, unless kept")
        if self.restyled_only:
            parts.append("restyled only")
        if self.no_near_duplicates:
            parts.append("no near-duplicates, unless kept")
        if self.min_scores:
            parts.append("judged " + ", ".join(f"{name} >= {least}" for name, least in self.min_scores))
        return "; ".join(parts) or "every conversation, with its flags and mark"


@dataclass
class Item:
    """One exported conversation: its listing row, its file and its twin."""

    row: ConversationSummary
    record: ConversationRecord
    twin: RestyledRecord | None
    version: str = ""  # its version's name (v1, v2...)
    judgment: JudgmentRecord | None = None


@dataclass
class ExportReport:
    path: Path
    format: Format
    written: int = 0
    excluded: int = 0  # left out by the selection
    skipped: Counter[str] = field(default_factory=Counter)  # unparseable, by the rule that says why
    total: int = 0  # conversations in the experiment

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def selected(store: ConversationStore, selection: Selection) -> tuple[list[Item], int, int]:
    """The chosen conversations, oldest first, with their files; and how many were left out, of how many."""
    rows = store.list()
    names = version_names(store.dir, rows)
    judgments = store.judgments()
    chosen = [row for row in rows if selection.admits(row) and selection.admits_scores(judgments.get(row.id))]
    items = []
    for row in sorted(chosen, key=lambda r: (r.created_at, r.id)):
        try:
            record, twin = store.load(row.id)
        except ConvogenError:
            continue  # removed since the listing
        items.append(Item(row, record, twin, names.get(row.version, ""), judgments.get(row.id)))
    return items, len(rows) - len(chosen), len(rows)


# rows --------------------------------------------------------------------------------------
def jsonl_row(item: Item) -> dict[str, Any]:
    """The file's own keys (``tweet_id``, ``tweet``, ``conv``, ...) plus the twin, flags and mark."""
    record, row = item.record, item.row
    data = record.to_json()
    data["persona"] = {"motivation": record.motivation_name, "disposition": record.disposition_name}
    data["restyled_conv"] = item.twin.restyled_conv if item.twin else None
    data["restyled_provenance"] = (
        item.twin.provenance.to_json() if item.twin and item.twin.provenance else None
    )
    data["id"] = row.id
    data["flags"] = list(row.flags)
    data["mark"] = row.mark
    data["near_duplicate_of"] = row.near_duplicate_of or None
    data["version"] = item.version
    data["judge"] = judge_fields(item.judgment)
    return data


def judge_fields(judgment: JudgmentRecord | None) -> dict[str, Any] | None:
    """The judge's scores and rationale for a row (None: not judged; judge-failed: the reason)."""
    if judgment is None:
        return None
    if judgment.failed:
        return {"verdict": judgment.verdict, "reason": judgment.reason}
    return {"scores": dict(judgment.scores), "rationale": judgment.rationale}


def dialog_messages(text: str, tweet: str, restyled: bool = False) -> list[tuple[str, str]] | str:
    """("human"|"gpt", text) turns: the post first, then SocBot as gpt and User as human, labels
    stripped. A conversation whose turns cannot be told apart gives the rule that says why instead:
    nothing is guessed."""
    dialog = parse_dialog(text)
    messages = dialog.messages
    if restyled and len(messages) > 1 and messages[0].speaker == USER and messages[1].speaker == SOCBOT:
        messages = messages[1:]  # the post, echoed as the restyle prompt showed it
    problem = unparseable(dialog, messages)
    if problem:
        return problem
    return [("human", tweet)] + [("gpt" if m.speaker == SOCBOT else "human", m.text) for m in messages]


def unparseable(dialog: Dialog, messages: Sequence[Message]) -> str | None:
    """The structure rule that keeps these messages from being alternating turns, if any."""
    if not any(m.speaker == SOCBOT for m in messages) or not any(m.speaker == USER for m in messages):
        return "no-dialog"
    if messages[0].speaker != SOCBOT:
        return "user-first"
    if any(a.speaker == b.speaker for a, b in itertools.pairwise(messages)):
        return "alternation"
    if any(m.empty for m in messages):
        return "empty-message"
    if dialog.outside:
        return "wrapper"
    return None


def sharegpt_row(item: Item, use: Literal["conv", "restyled"] = "conv") -> dict[str, Any] | str:
    """A ShareGPT record, or the reason it cannot be one."""
    record, row = item.record, item.row
    if use == "restyled":
        if item.twin is None:
            return "not-restyled"
        turns = dialog_messages(item.twin.restyled_conv, record.tweet, restyled=True)
    else:
        turns = dialog_messages(record.conv, record.tweet)
    if isinstance(turns, str):
        return turns
    return {
        "conversations": [{"from": who, "value": text} for who, text in turns],
        "id": row.id,
        "tweet_id": record.tweet_id,
        "persona": row.persona,
        "motivation": record.motivation_name,
        "disposition": record.disposition_name,
        "flags": list(row.flags),
        "mark": row.mark,
        "version": item.version,
        "judge": judge_fields(item.judgment),
    }


def csv_row(item: Item) -> dict[str, Any]:
    record, row = item.record, item.row
    return {
        "id": row.id,
        "tweet_id": record.tweet_id,
        "tweet": record.tweet,
        "motivation": record.motivation_name,
        "disposition": record.disposition_name,
        "conv": record.conv,
        "restyled_conv": item.twin.restyled_conv if item.twin else "",
        "turns": row.turns,
        "flags": ";".join(row.flags),
        "mark": row.mark,
        "near_duplicate_of": row.near_duplicate_of,
        "model": row.model,
        "fingerprint": row.fingerprint,
        "created_at": row.created_at,
        "version": item.version,
        "judge_scores": ";".join(f"{k}={v}" for k, v in item.judgment.scores.items())
        if item.judgment
        else "",
        "judge_lowest": (item.judgment.lowest if item.judgment else None) or "",
    }


# writers -----------------------------------------------------------------------------------
def check_output(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise ConvogenError(
            Problem(path, "already exists", hint="choose another -o PATH, or pass --force to replace it")
        )


def _jsonl(rows: Iterator[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def export_file(
    store: ConversationStore,
    fmt: Format,
    path: Path,
    selection: Selection | None = None,
    force: bool = False,
    use: Literal["conv", "restyled"] = "conv",
) -> ExportReport:
    """Write jsonl, sharegpt or csv to ``path``.

    sharegpt is a JSON array when ``path`` ends in .json, JSON Lines otherwise."""
    path = Path(path)
    check_output(path, force)
    selection = selection or Selection()
    items, excluded, total = selected(store, selection)
    report = ExportReport(path, fmt, excluded=excluded, total=total)
    if fmt == "jsonl":
        text = _jsonl(jsonl_row(item) for item in items)
        report.written = len(items)
    elif fmt == "sharegpt":
        rows = []
        for item in items:
            row = sharegpt_row(item, use)
            if isinstance(row, str):
                report.skipped[row] += 1
            else:
                rows.append(row)
        report.written = len(rows)
        text = (
            json.dumps(rows, ensure_ascii=False, indent=1) + "\n"
            if path.suffix == ".json"
            else _jsonl(iter(rows))
        )
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(csv_row(item) for item in items)
        text = buffer.getvalue()
        report.written = len(items)
    else:
        raise ConvogenError(Problem(None, f"format '{fmt}' is not a single file", hint="use export_hf"))
    atomic_write_text(path, text)
    return report


def samplings(items: Sequence[Item]) -> list[dict[str, Any]]:
    """The distinct sampling settings the conversations were generated with (from provenance)."""
    seen: list[dict[str, Any]] = []
    for item in items:
        sampling = item.record.provenance.sampling if item.record.provenance else {}
        if sampling and sampling not in seen:
            seen.append(sampling)
    return seen
