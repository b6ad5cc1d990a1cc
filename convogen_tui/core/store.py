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

from convogen_tui.core.dialog import Dialog, parse_dialog, words
from convogen_tui.core.diversity import mtld
from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.experiment import CONVERSATIONS, RESTYLED, TRASH
from convogen_tui.core.files import atomic_write_json, atomic_write_text
from convogen_tui.core.neardup import Item, find_near_duplicates, signature_of
from convogen_tui.core.quality import ResolvedQuality
from convogen_tui.core.records import (
    ConversationRecord,
    RestyledRecord,
    Review,
    read_conversation,
    read_restyled,
)
from convogen_tui.core.turns import count_turns
from convogen_tui.core.verdicts import judge, quality_settings

INDEX_VERSION = 4  # bump when summaries change, so old indexes are rebuilt


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
    flags: list[str] = field(default_factory=list)  # quality rule names (convogen quality --rules)
    model: str = ""
    near_duplicate_of: str = ""  # the earlier conversation this one nearly repeats
    words: int = 0  # words in the messages (labels and notes left out)
    mtld: float = 0.0
    restyled_length: int = 0
    completion_tokens: int = 0  # generation pass, from provenance
    elapsed_s: float = 0.0
    restyle_tokens: int = 0
    restyle_elapsed_s: float = 0.0
    restyled_at: float = 0.0
    gpu: bool = False  # generated with layers offloaded to a GPU
    fingerprint: str = ""
    template_sha256: str = ""
    restyle_template_sha256: str = ""

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

    def __init__(self, expt_dir: Path, quality: ResolvedQuality | None = None) -> None:
        self.dir = Path(expt_dir)
        self._quality = quality
        self.conv_dir = self.dir / CONVERSATIONS
        self.restyled_dir = self.dir / RESTYLED
        self.trash_dir = self.dir / TRASH
        self.index_path = self.dir / ".convogen" / "index.json"
        self._index: dict[str, Any] | None = None

    @property
    def quality(self) -> ResolvedQuality:
        """The quality thresholds (from expt-setup.json and the templates), read once."""
        if self._quality is None:
            self._quality = quality_settings(self.dir)
        return self._quality

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
        """Every conversation, newest first; reads only files changed since the last listing.

        Quality verdicts are part of each cached summary (recomputed for every file when the
        thresholds change); near-duplicates are found again whenever a file came or went.
        """
        index = self._load_index()
        quality_key = self.quality.key()
        if index.get("quality") != quality_key:
            index["entries"], index["near"], index["quality"] = {}, {}, quality_key
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
            twin = None
            if twin_key is not None:
                with contextlib.suppress(ConvogenError):
                    twin = read_restyled(self.restyled_dir / name)
            dialog = parse_dialog(record.conv)
            tokens = [w for m in dialog.messages for w in words(m.text)]
            summary = _summarize(conv_id, record, twin, twin_key is not None, stat_key, self.quality, dialog)
            summary.words, summary.mtld = len(tokens), round(mtld(tokens), 3)
            seen[conv_id] = {
                "stat": stat_key,
                "twin": twin_key,
                "summary": asdict(summary),
                "sig": signature_of(tokens),
            }
            changed = True
        if changed or len(seen) != len(entries) or "near" not in index:
            index["entries"] = seen
            near = find_near_duplicates(
                [Item(i, e["summary"]["created_at"], e.get("sig")) for i, e in seen.items()],
                self.quality.near_duplicate_similarity,
                {i for i, e in seen.items() if e["summary"]["mark"] == "kept" or not e["summary"]["flags"]},
            )
            index["near"] = {conv_id: other for conv_id, (other, _) in near.items()}
            self._save_index(index)
        near_map: dict[str, str] = index["near"]
        flag_near = self.quality.enabled("near-duplicate")
        rows = []
        for conv_id, entry in seen.items():
            row = ConversationSummary(**entry["summary"])
            if conv_id in near_map:
                row.near_duplicate_of = near_map[conv_id]
                if flag_near:
                    row.flags = [*row.flags, "near-duplicate"]
            rows.append(row)
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
            # compact: json's C encoder runs only without indent, and nobody reads this file by eye
            atomic_write_text(self.index_path, json.dumps(index, ensure_ascii=False, separators=(",", ":")))


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
    conv_id: str,
    record: ConversationRecord,
    twin: RestyledRecord | None,
    has_twin: bool,
    stat_key: list[int],
    quality: ResolvedQuality,
    dialog: Dialog,
) -> ConversationSummary:
    provenance = record.provenance
    socbot, user = count_turns(record.conv)
    created = (provenance.created_at if provenance else None) or stat_key[0] / 1e9
    twin_provenance = twin.provenance if twin is not None else None
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
        flags=[verdict.rule for verdict in judge(record, twin, quality, dialog)],
        model=provenance.model.name if provenance else "",
        restyled_length=len(twin.restyled_conv) if twin is not None else 0,
        completion_tokens=provenance.completion_tokens if provenance else 0,
        elapsed_s=provenance.elapsed_s if provenance else 0.0,
        restyle_tokens=twin_provenance.completion_tokens if twin_provenance else 0,
        restyle_elapsed_s=twin_provenance.elapsed_s if twin_provenance else 0.0,
        restyled_at=(twin_provenance.created_at or 0.0) if twin_provenance else 0.0,
        gpu=bool(provenance and provenance.model.gpu_layers),
        fingerprint=provenance.model.fingerprint if provenance else "",
        template_sha256=provenance.template.sha256 if provenance else "",
        restyle_template_sha256=twin_provenance.template.sha256 if twin_provenance else "",
    )
