"""Export an experiment as one dataset file: JSON Lines, ShareGPT or CSV (Hugging Face datasets lives
in ``integrations.hf_dataset``, which builds on the rows made here).

Rows are written as they are read (memory does not grow with the experiment) into a temporary file
that is renamed into place at the end, so an interrupted export leaves nothing half-written, and an
existing output is never replaced without ``force``. Nothing the selection admits is dropped
silently: a conversation whose turns cannot be told apart goes out as one text field
(``parsed: false``, with the rule that says why), and what cannot go out at all (``--dialog
restyled`` without a twin, a file deleted meanwhile) is counted in the report, kept ones by id.
An export that would write nothing raises instead, unless ``allow_empty``.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.judging.dialog import SOCBOT, USER, Dialog, Message, parse_dialog, without_echoed_post
from convogen_tui.core.keeping.files import RedactingWriter, atomic_writer
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


Progress = Callable[[int, int], None]  # (conversations done, conversations asked for)


@dataclass
class ExportReport:
    """What an export wrote, and what it could not: the CLI's summary and the dataset card read it."""

    path: Path
    format: Format
    asked: int = 0  # admitted by the selection
    written: int = 0
    excluded: int = 0  # left out by the selection
    total: int = 0  # conversations in the experiment
    unparsed: Counter[str] = field(default_factory=Counter)  # written as one text field, by rule
    skipped: Counter[str] = field(default_factory=Counter)  # asked for but not written, by reason
    skipped_kept: list[str] = field(default_factory=list)  # ids of kept conversations not written

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @property
    def unparsed_total(self) -> int:
        return sum(self.unparsed.values())

    def skip(self, row: ConversationSummary, reason: str) -> None:
        self.skipped[reason] += 1
        if row.mark == "kept":
            self.skipped_kept.append(row.id)

    def shortfall(self) -> str:
        """Why fewer rows were written than asked for ("" when none is missing)."""
        if not self.skipped:
            return ""
        reasons = ", ".join(f"{why} {n}" for why, n in sorted(self.skipped.items()))
        line = f"{self.skipped_total} of {self.asked} asked for not written ({reasons})"
        if self.skipped_kept:
            ids = " ".join(conv_id[:8] for conv_id in self.skipped_kept[:10])
            more = " ..." if len(self.skipped_kept) > 10 else ""
            line += f", {len(self.skipped_kept)} of them marked kept: {ids}{more}"
        return line


SKIP_REASONS = {
    "not-restyled": "no restyled twin yet (--dialog restyled)",
    "gone": "deleted or unreadable since the listing",
}


def chosen_rows(store: ConversationStore, selection: Selection, report: ExportReport) -> Chosen:
    """The listing rows the selection admits, oldest first; counts go into ``report``."""
    rows = store.list()
    names = version_names(store.dir, rows)
    judgments = store.judgments()
    chosen = sorted(
        (row for row in rows if selection.admits(row) and selection.admits_scores(judgments.get(row.id))),
        key=lambda r: (r.created_at, r.id),
    )
    report.total, report.asked, report.excluded = len(rows), len(chosen), len(rows) - len(chosen)
    return Chosen(chosen, names, judgments)


@dataclass
class Chosen:
    """The rows an export writes, oldest first, with what each row's item carries beside its files."""

    rows: list[ConversationSummary]
    names: dict[str, str]  # version id -> its name (v1, v2...)
    judgments: dict[str, JudgmentRecord]


def read_items(
    store: ConversationStore, chosen: Chosen, report: ExportReport, progress: Progress | None = None
) -> Iterator[Item]:
    """Each row's file and twin, read one at a time as the writer asks (a file gone is counted)."""
    for done, row in enumerate(chosen.rows, start=1):
        try:
            record, twin = store.load(row.id)
        except ConvogenError:
            report.skip(row, "gone")
        else:
            yield Item(row, record, twin, chosen.names.get(row.version, ""), chosen.judgments.get(row.id))
        if progress is not None:
            progress(done, len(chosen.rows))


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
    nothing is guessed. In a restyled thread a leading User message that repeats the post (the
    restyle prompt shows it) is not a turn; a User message that only comes first is one."""
    dialog = parse_dialog(text)
    messages = without_echoed_post(dialog.messages, tweet) if restyled else dialog.messages
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


def sharegpt_row(item: Item, use: Literal["conv", "restyled"] = "conv") -> dict[str, Any] | None:
    """A ShareGPT record (None: ``use`` is restyled and there is no twin). Turns that cannot be told
    apart give ``"parsed": false``, the whole text in ``text`` and the rule in ``unparsed``."""
    record, row = item.record, item.row
    if use == "restyled":
        if item.twin is None:
            return None
        text = item.twin.restyled_conv
    else:
        text = record.conv
    turns = dialog_messages(text, record.tweet, restyled=use == "restyled")
    out: dict[str, Any] = {
        "conversations": [] if isinstance(turns, str) else [{"from": w, "value": t} for w, t in turns],
        "parsed": not isinstance(turns, str),
    }
    if isinstance(turns, str):
        out |= {"text": text, "unparsed": turns}
    return out | {
        "id": row.id,
        "tweet_id": record.tweet_id,
        "tweet": record.tweet,
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


def nothing_written(report: ExportReport, selection: Selection) -> ConvogenError:
    """The error for an export that would write no row: why, and how to go on."""
    why = [f"{report.total} conversation(s) in the experiment"]
    if report.excluded:
        why.append(f"{report.excluded} left out by the selection ({selection.describe()})")
    if report.skipped:
        why.append(report.shortfall())
    return ConvogenError(
        Problem(
            report.path,
            "no conversation written: " + "; ".join(why),
            hint="change the selection, or pass --allow-empty to write an empty file",
        )
    )


def _write_rows(
    out: RedactingWriter, fmt: Format, path: Path, items: Iterable[Item], use: Literal["conv", "restyled"],
    report: ExportReport,
) -> None:  # fmt: skip
    """Each item as one row of the format, written as soon as it is read."""
    array = fmt == "sharegpt" and path.suffix == ".json"
    writer = None
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
    if array:
        out.write("[")
    for item in items:
        if fmt == "csv":
            assert writer is not None
            writer.writerow(csv_row(item))
        else:
            row = jsonl_row(item) if fmt == "jsonl" else sharegpt_row(item, use)
            if row is None:
                report.skip(item.row, "not-restyled")
                continue
            if row.get("parsed") is False:
                report.unparsed[row["unparsed"]] += 1
            line = json.dumps(row, ensure_ascii=False)
            out.write(("\n" if not report.written else ",\n") + line if array else line + "\n")
        report.written += 1
    if array:
        out.write("\n]\n" if report.written else "]\n")


def export_file(
    store: ConversationStore,
    fmt: Format,
    path: Path,
    selection: Selection | None = None,
    force: bool = False,
    use: Literal["conv", "restyled"] = "conv",
    allow_empty: bool = False,
    progress: Progress | None = None,
) -> ExportReport:
    """Write jsonl, sharegpt or csv to ``path``, streaming (see the module's docstring).

    sharegpt is a JSON array when ``path`` ends in .json, JSON Lines otherwise."""
    path = Path(path)
    check_output(path, force)
    if fmt not in ("jsonl", "sharegpt", "csv"):
        raise ConvogenError(Problem(None, f"format '{fmt}' is not a single file", hint="use export_hf"))
    selection = selection or Selection()
    report = ExportReport(path, fmt)
    rows = chosen_rows(store, selection, report)
    with atomic_writer(path) as out:
        _write_rows(out, fmt, path, read_items(store, rows, report, progress), use, report)
        if not report.written and not allow_empty:
            raise nothing_written(report, selection)  # leaves no file behind
    return report


def samplings(items: Iterable[Item]) -> list[dict[str, Any]]:
    """The distinct sampling settings the conversations were generated with (from provenance)."""
    seen: list[dict[str, Any]] = []
    for item in items:
        sampling = item.record.provenance.sampling if item.record.provenance else {}
        if sampling and sampling not in seen:
            seen.append(sampling)
    return seen
