"""Conversation files: atomic writes, restyled twins, trash with undo, review marks, fast listing.

Files keep the original flat keys (``tweet_id``, ``disposition``, ``motivation``, ``tweet``, ``conv``;
``restyled_conv`` in the twin) so ``json.loads(path.read_text())["conv"]`` keeps working; provenance
and review marks sit beside them. A listing index in ``.convogen/index.json`` is keyed by file
mtime and size, so listing 10 000 conversations reads only the files that changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.experiment import CONVERSATIONS, RESTYLED, TRASH
from convogen_tui.core.files import atomic_write_json
from convogen_tui.core.records import (
    ConversationRecord,
    RestyledRecord,
    Review,
    read_conversation,
    read_restyled,
)
from convogen_tui.core.turns import count_turns

INDEX_VERSION = 3  # bump when summaries change, so old indexes are rebuilt
MIN_TURNS = 8


def quality_flags(record: ConversationRecord, has_twin: bool) -> list[str]:
    """Automatic warnings a reviewer wants to see at a glance."""
    socbot, user = count_turns(record.conv)
    flags = []
    if socbot == 0 or user == 0:
        flags.append("no-dialog")
    elif min(socbot, user) < MIN_TURNS:
        flags.append("short")
    if record.finish_reason == "length":
        flags.append("truncated")
    if not has_twin:
        flags.append("no-restyle")
    return flags


@dataclass
class ConversationSummary:
    """One row of a listing: enough to show and filter without reading the file again."""

    id: str
    tweet_id: str
    tweet: str
    motivation: str
    disposition: str
    created_at: float
    turns: int
    length: int
    restyled: bool
    mark: str  # "", "flagged" or "kept"
    flags: list[str] = field(default_factory=list)
    model: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.tweet_id, self.motivation, self.disposition)

    @property
    def persona(self) -> str:
        return f"{self.motivation} x {self.disposition}"


def new_conversation_id() -> str:
    return str(uuid.uuid4())


class ConversationStore:
    """The conversations of one experiment folder."""

    def __init__(self, expt_dir: Path) -> None:
        self.dir = Path(expt_dir)
        self.conv_dir = self.dir / CONVERSATIONS
        self.restyled_dir = self.dir / RESTYLED
        self.trash_dir = self.dir / TRASH
        self.index_path = self.dir / ".convogen" / "index.json"
        self._index: dict[str, Any] | None = None

    # writing ------------------------------------------------------------------------------
    def conversation_path(self, conv_id: str) -> Path:
        return self.conv_dir / f"{conv_id}.json"

    def restyled_path(self, conv_id: str) -> Path:
        return self.restyled_dir / f"{conv_id}.json"

    def save_conversation(self, record: ConversationRecord, conv_id: str | None = None) -> str:
        conv_id = conv_id or new_conversation_id()
        atomic_write_json(self.conversation_path(conv_id), record.to_json())
        return conv_id

    def save_restyled(self, conv_id: str, record: RestyledRecord) -> None:
        atomic_write_json(self.restyled_path(conv_id), record.to_json())

    # reading ------------------------------------------------------------------------------
    def load(self, conv_id: str) -> tuple[ConversationRecord, RestyledRecord | None]:
        """A conversation and its twin (None until restyled); errors name the file and field."""
        path = self.conversation_path(conv_id)
        if not path.is_file():
            raise ConvogenError(Problem(path, f"no conversation {conv_id} in {self.dir.name}"))
        conv = read_conversation(path)
        twin_path = self.restyled_path(conv_id)
        twin = read_restyled(twin_path) if twin_path.is_file() else None
        return conv, twin

    def find(self, prefix: str) -> str:
        """A conversation id from a unique prefix, as git does for commits."""
        if self.conversation_path(prefix).is_file():
            return prefix
        matches = [p.stem for p in self.conv_dir.glob(f"{prefix}*.json")] if prefix else []
        if len(matches) == 1:
            return matches[0]
        what = "matches several conversations" if matches else "matches no conversation"
        raise ConvogenError(
            Problem(self.conv_dir, f"id '{prefix}' {what}", hint="see ids with: convogen show EXPT")
        )

    def list(self) -> list[ConversationSummary]:
        """Every conversation, newest first; reads only files changed since the last listing."""
        index = self._load_index()
        entries: dict[str, Any] = index["entries"]
        twins = _scan(self.restyled_dir)
        seen: dict[str, Any] = {}
        changed = False
        for name, stat_key in _scan(self.conv_dir).items():
            conv_id = name[:-5]
            twin_key = twins.get(name)
            cached = entries.get(conv_id)
            if cached and cached["stat"] == stat_key and cached["twin"] == twin_key:
                seen[conv_id] = cached
                continue
            try:
                record = read_conversation(self.conv_dir / name)
            except ConvogenError:
                continue
            seen[conv_id] = {
                "stat": stat_key,
                "twin": twin_key,
                "summary": asdict(_summarize(conv_id, record, twin_key is not None, stat_key)),
            }
            changed = True
        if changed or len(seen) != len(entries):
            index["entries"] = seen
            self._save_index(index)
        rows = [ConversationSummary(**entry["summary"]) for entry in seen.values()]
        rows.sort(key=lambda r: r.created_at, reverse=True)
        return rows

    def count(self) -> int:
        return len(_scan(self.conv_dir))

    def count_restyled(self) -> int:
        return len(_scan(self.restyled_dir))

    def done_keys(self) -> set[tuple[str, str, str]]:
        return {row.key for row in self.list()}

    def without_twin(self) -> list[str]:
        twins = _scan(self.restyled_dir)
        return sorted(name[:-5] for name in _scan(self.conv_dir) if name not in twins)

    # review ------------------------------------------------------------------------------
    def set_mark(self, conv_id: str, mark: str, note: str | None = None) -> None:
        """Flag or keep a conversation; the mark is stored in its file under ``review``."""
        if mark not in ("", "flagged", "kept"):
            raise ConvogenError(Problem(None, f"unknown mark '{mark}'", hint="use flagged or kept"))
        record, _ = self.load(conv_id)
        review = record.review or Review()
        review.mark = mark  # type: ignore[assignment]  # checked above
        review.marked_at = time.time()
        if note is not None:
            review.note = note
        record.review = review
        self.save_conversation(record, conv_id)

    # trash -------------------------------------------------------------------------------
    def delete(self, conv_ids: list[str]) -> str:
        """Move conversations and their twins to trash/<batch>/; returns the batch for undo."""
        batch = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        target = self.trash_dir / batch
        for conv_id in conv_ids:
            source = self.conversation_path(conv_id)
            if not source.is_file():
                raise ConvogenError(Problem(source, f"no conversation {conv_id} to delete"))
        for conv_id in conv_ids:
            for folder, path in (
                (CONVERSATIONS, self.conversation_path(conv_id)),
                (RESTYLED, self.restyled_path(conv_id)),
            ):
                if path.is_file():
                    (target / folder).mkdir(parents=True, exist_ok=True)
                    os.replace(path, target / folder / path.name)
        return batch

    def trash_batches(self) -> list[str]:
        if not self.trash_dir.is_dir():
            return []
        return sorted(p.name for p in self.trash_dir.iterdir() if p.is_dir())

    def trash_count(self) -> int:
        return sum(len(_scan(self.trash_dir / b / CONVERSATIONS)) for b in self.trash_batches())

    def undo(self, batch: str | None = None) -> list[str]:
        """Put a deleted batch back (the latest by default); returns the restored ids."""
        batches = self.trash_batches()
        if not batches:
            raise ConvogenError(Problem(self.trash_dir, "nothing to undo: the trash is empty"))
        batch = batch or batches[-1]
        source = self.trash_dir / batch
        if not source.is_dir():
            raise ConvogenError(Problem(self.trash_dir, f"no trash batch '{batch}'"))
        moves = []
        for folder, dest_dir in ((CONVERSATIONS, self.conv_dir), (RESTYLED, self.restyled_dir)):
            for path in sorted((source / folder).glob("*.json")):
                dest = dest_dir / path.name
                if dest.exists():
                    raise ConvogenError(Problem(dest, "cannot restore: a file with this name exists again"))
                moves.append((path, dest))
        for path, dest in moves:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
        shutil.rmtree(source, ignore_errors=True)
        return sorted({dest.stem for _, dest in moves if dest.parent == self.conv_dir})

    def empty_trash(self) -> int:
        count = self.trash_count()
        shutil.rmtree(self.trash_dir, ignore_errors=True)
        return count

    # index -------------------------------------------------------------------------------
    def _load_index(self) -> dict[str, Any]:
        if self._index is None:
            data = _read_json(self.index_path) if self.index_path.is_file() else None
            if not data or data.get("version") != INDEX_VERSION:
                data = {"version": INDEX_VERSION, "entries": {}}
            self._index = data
        return self._index

    def _save_index(self, index: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # a read-only experiment still lists, uncached
            atomic_write_json(self.index_path, index)


def _scan(folder: Path) -> dict[str, list[int]]:
    """name -> [mtime_ns, size] of the .json files directly in a folder."""
    out: dict[str, list[int]] = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if name.endswith(".json") and not name.startswith("."):
                    stat = entry.stat()
                    out[name] = [stat.st_mtime_ns, stat.st_size]
    except FileNotFoundError:
        pass
    return out


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _summarize(
    conv_id: str, record: ConversationRecord, has_twin: bool, stat_key: list[int]
) -> ConversationSummary:
    provenance = record.provenance
    socbot, user = count_turns(record.conv)
    created = (provenance.created_at if provenance else None) or stat_key[0] / 1e9
    return ConversationSummary(
        id=conv_id,
        tweet_id=record.tweet_id,
        tweet=record.tweet[:200],
        motivation=record.motivation_name,
        disposition=record.disposition_name,
        created_at=float(created),
        turns=min(socbot, user) if socbot and user else 0,
        length=len(record.conv),
        restyled=has_twin,
        mark=record.mark,
        flags=quality_flags(record, has_twin),
        model=provenance.model.name if provenance else "",
    )
