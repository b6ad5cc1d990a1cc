"""Conversation files: atomic writes, restyled twins, trash with undo, review marks, fast listing.

Files keep the original flat keys (``tweet_id``, ``disposition``, ``motivation``, ``tweet``, ``conv``;
``restyled_conv`` in the twin) so ``json.loads(path.read_text())["conv"]`` keeps working; provenance
and review marks sit beside them. The listing index (``.convogen/index.sqlite``, see
:mod:`convogen_tui.core.keeping.index`) is keyed by each file's mtime and size, so listing 100,000
conversations reads only the files that changed (none, and stats none, when their folders did not
change); an index that is corrupt or of the wrong shape is rebuilt, and a conversation file that
cannot be read is listed as such (:attr:`Listing.unreadable`), never hidden.

Changes that read before they write (delete, undo, marks, saving a twin) hold a short store lock,
``.convogen/store.lock``, so a delete during a restyle never leaves a twin without its conversation:
the twin follows its conversation into the trash. Trash batches carry a sequence number, so undo
restores the latest first however many deletes happened in one second.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
import shutil
import sqlite3
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock, Timeout

from convogen_tui.core.errors import ConvogenError, Problem, StorageError
from convogen_tui.core.judging.dialog import Dialog, dialog_words, parse_dialog
from convogen_tui.core.judging.diversity import bottom_k, gram_hashes, mtld, word_crcs
from convogen_tui.core.judging.neardup import signature_of
from convogen_tui.core.judging.quality import ResolvedQuality, Verdict
from convogen_tui.core.judging.turns import count_turns
from convogen_tui.core.judging.verdicts import QualityByVersion, judge
from convogen_tui.core.keeping.files import (
    atomic_write_json,
    probe_writable,
    remove_stale_temps,
    storage_problem,
)
from convogen_tui.core.keeping.index import Damaged, Entry, Index, Sketches, Stamp, shard_of
from convogen_tui.core.keeping.records import (
    ConversationRecord,
    JudgmentRecord,
    RestyledRecord,
    Review,
    read_conversation,
    read_judgment,
    read_restyled,
)
from convogen_tui.core.keeping.rendered import rendered_lines
from convogen_tui.core.keeping.versions import version_of
from convogen_tui.core.making.experiment import CONVERSATIONS, JUDGMENTS, RESTYLED, TRASH
from convogen_tui.core.persona import persona_label


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
    version: str = ""  # the id of the texts that made it (core.keeping.versions.version_of)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.tweet_id, self.motivation, self.disposition)

    @property
    def persona(self) -> str:
        return persona_label(self.motivation, self.disposition)


@dataclass
class Listing:
    """Every conversation of an experiment: readable ones summarised, unreadable ones named."""

    rows: list[ConversationSummary]
    unreadable: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class TrashBatch:
    """One delete: its folder under trash/, its place in the order of deletes, what it holds."""

    name: str
    seq: int
    deleted_at: float
    conversations: int

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.deleted_at)) if self.deleted_at else "?"
        return f"#{self.seq} {when}: {self.conversations} conversation(s) ({self.name})"


BATCH_FILE = "batch.json"
_BATCH_NAME = re.compile(r"^(\d{6,})-\d{8}-\d{6}$")
STORE_LOCK_TIMEOUT_S = 60.0  # store changes take milliseconds; waiting this long means a hung process


def new_conversation_id() -> str:
    return str(uuid.uuid4())


class ConversationStore:
    """The conversations of one experiment folder."""

    def __init__(self, expt_dir: Path, quality: ResolvedQuality | None = None) -> None:
        self.dir = Path(expt_dir)
        self._quality = quality
        self._given_quality = quality  # thresholds for every conversation (tests); None: per version
        self._by_version: QualityByVersion | None = None
        self.conv_dir = self.dir / CONVERSATIONS
        self.restyled_dir = self.dir / RESTYLED
        self.trash_dir = self.dir / TRASH
        self.judgments_dir = self.dir / JUDGMENTS
        self.index_path = self.dir / ".convogen" / "index.sqlite"
        self._index: Index | None = None
        self._index_lock = threading.RLock()

    @property
    def quality(self) -> ResolvedQuality:
        """The quality thresholds (from expt-setup.json and the templates), read once."""
        if self._quality is None:
            self._quality = self.by_version.current
        return self._quality

    @property
    def by_version(self) -> QualityByVersion:
        """Thresholds per conversation, from the templates that made it (read once)."""
        if self._by_version is None:
            self._by_version = QualityByVersion(self.dir)
        return self._by_version

    def quality_for(self, record: ConversationRecord, twin: RestyledRecord | None) -> ResolvedQuality:
        """The thresholds a conversation is judged by: given ones, else its own version's."""
        if self._given_quality is not None:
            return self._given_quality
        return self.by_version.for_pair(record, twin)

    def judge(self, record: ConversationRecord, twin: RestyledRecord | None) -> list[Verdict]:
        """A conversation's per-file verdicts against the templates that made it."""
        return judge(record, twin, self.quality_for(record, twin))

    # writing ------------------------------------------------------------------------------
    def conversation_path(self, conv_id: str) -> Path:
        return self.conv_dir / f"{conv_id}.json"

    def restyled_path(self, conv_id: str) -> Path:
        return self.restyled_dir / f"{conv_id}.json"

    def judgment_path(self, conv_id: str) -> Path:
        return self.judgments_dir / f"{conv_id}.json"

    def save_conversation(self, record: ConversationRecord, conv_id: str | None = None) -> str:
        conv_id = conv_id or new_conversation_id()
        atomic_write_json(self.conversation_path(conv_id), record.to_json(), create_parents=False)
        return conv_id

    def save_restyled(self, conv_id: str, record: RestyledRecord) -> Path | None:
        """Save a twin beside its conversation; where it went (None: the conversation is gone).

        A conversation deleted while its restyle ran is in a trash batch: the twin joins it there,
        so undo brings back the pair. One deleted for good takes its twin with it.
        """
        return self._save_beside(conv_id, RESTYLED, record.to_json())

    def save_judgment(self, conv_id: str, record: JudgmentRecord) -> Path | None:
        """Save a judgment beside its pair (into the trash with it; None: gone for good)."""
        return self._save_beside(conv_id, JUDGMENTS, record.to_json())

    def _save_beside(self, conv_id: str, folder: str, data: dict[str, Any]) -> Path | None:
        """Write a file that belongs to a conversation, wherever the conversation is now."""
        with self._locked():
            if self.conversation_path(conv_id).is_file():
                path = self.dir / folder / f"{conv_id}.json"
            else:
                batch = self._batch_holding(conv_id)
                if batch is None:
                    return None
                path = self.trash_dir / batch / folder / f"{conv_id}.json"
            atomic_write_json(path, data, create_parents=path.parent.parent != self.dir)
            return path

    def load_judgment(self, conv_id: str) -> JudgmentRecord | None:
        """A conversation's judgment, None if not judged; an unreadable file raises ConvogenError."""
        path = self.judgment_path(conv_id)
        return read_judgment(path) if path.is_file() else None

    def judged_ids(self) -> set[str]:
        """The conversations with a judgment file (readable or not), without reading one."""
        return {name[:-5] for name in _inodes(self.judgments_dir)}

    def judgments_stamp(self) -> str | None:
        """The judgments folder's stamp (None: changed too recently to tell a later change from it)."""
        return _folder_stamps(self.judgments_dir)

    def judgments(self) -> dict[str, JudgmentRecord]:
        """Every readable judgment of the listed conversations, by id (unreadable ones left out)."""
        out: dict[str, JudgmentRecord] = {}
        for name in _scan(self.judgments_dir):
            with contextlib.suppress(ConvogenError):
                out[name[:-5]] = read_judgment(self.judgments_dir / name)
        return out

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The short store lock: one read-then-write change at a time, across processes and threads."""
        folder = self.index_path.parent
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise StorageError.of(exc, storage_problem(exc, self.dir)) from None
        lock = FileLock(str(folder / "store.lock"), timeout=STORE_LOCK_TIMEOUT_S, thread_local=False)
        try:
            lock.acquire()
        except Timeout:
            raise ConvogenError(
                Problem(
                    folder / "store.lock",
                    "another process has held the store lock for a minute",
                    hint="a convogen process is hung; stop it and try again",
                )
            ) from None
        except OSError as exc:
            raise StorageError.of(exc, storage_problem(exc, folder)) from None
        try:
            yield
        finally:
            lock.release()

    def writable_problems(self) -> list[Problem]:
        """What would stop files being saved: read-only or unwritable folders, a disk nearly full."""
        problems: list[Problem] = []
        for folder in (self.conv_dir, self.restyled_dir):
            problems += [p for p in probe_writable(folder) if p not in problems]
        return problems

    def prepare_run(self) -> list[Path]:
        """Before a run spends tokens (holding the run lock): raise StorageError if files cannot be
        saved, and remove the temporary files crashed runs left; returns those removed."""
        problems = self.writable_problems()
        if problems:
            raise StorageError(problems[0], problems[1:])
        return self.remove_stale_temps()

    def remove_stale_temps(self) -> list[Path]:
        """Temporary files that crashed writers left behind (a run holding the run lock calls this)."""
        folders = [self.dir, self.conv_dir, self.restyled_dir, self.judgments_dir, self.index_path.parent]
        for batch in self.trash_batches():
            folders += [self.trash_dir / batch / name for name in (CONVERSATIONS, RESTYLED, JUDGMENTS)]
        return remove_stale_temps(folders)

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
        """Every readable conversation, newest first (see :meth:`scan` for the unreadable ones)."""
        return self.scan().rows

    def scan(self, full: bool = False) -> Listing:
        """Every conversation, newest first, and every file that cannot be read (path and reason).

        Reads only files changed since the last listing (many: in a process per core), and updates
        the index (:mod:`convogen_tui.core.keeping.index`) in proportion to what changed. Quality
        verdicts are part of each summary (recomputed for every file when the thresholds change).
        An index that cannot be trusted is rebuilt from the files. When neither folder changed
        since the last look (every write here renames a file into its folder) no file is even
        stat'ed; ``full`` stats them all anyway (a file edited in place).
        """
        return self._rebuilding(lambda: self._scan_with_index(full))

    def _rebuilding(self, use: Callable[[], _T]) -> _T:
        """``use()`` of the index, one thread at a time (the app's Review and Stats workers share a
        store and its connection); an index found damaged meanwhile is rebuilt and used again."""
        with self._index_lock:
            try:
                return use()
            except (sqlite3.DatabaseError, Damaged, ValueError, TypeError):
                self._reset_index()
            return use()

    def _scan_with_index(self, full: bool = False) -> Listing:
        unreadable = self._refresh(full)
        return Listing(self.index().rows(self.quality.enabled("near-duplicate")), unreadable)

    def refresh(self, full: bool = False) -> tuple[int, list[Problem]]:
        """Bring the index up to date with the files, without building the rows: the index's
        generation (it moves with every change) and the unreadable files. Pollers call this and
        list only when the generation moved."""

        def refreshed() -> tuple[int, list[Problem]]:
            unreadable = self._refresh(full)
            return self.index().generation(), unreadable

        return self._rebuilding(refreshed)

    def _refresh(self, full: bool) -> list[Problem]:
        index = self.index()
        folders = _folder_stamps(self.conv_dir, self.restyled_dir)
        if not full and folders is not None and index.meta("folders") == folders:
            # nothing was renamed into or out of either folder since the last full look, and every
            # write here is a rename: the index holds the listing (an in-place edit: r, or full=True)
            return _problems_from_json(index.meta("unreadable"))
        unreadable = self._update_index(index, full)
        index.set_meta({"folders": folders or "", "unreadable": _problems_to_json(unreadable)})
        return unreadable

    def _update_index(self, index: Index, full: bool) -> list[Problem]:
        """Read the files whose stamp changed, update the index; the unreadable ones.

        ``full`` stats every file. Otherwise only the files whose name or inode is new are stat'ed:
        the folder listing gives both without a stat, and every write here renames a new file into
        place, so a file with its old inode is the file the index read (an edit in place: ``full``)."""
        if full:
            known = index.stamps()
            disk = _disk_stamps(self.conv_dir, self.restyled_dir)
            todo = [(conv_id, stamp) for conv_id, stamp in disk.items() if known.get(conv_id) != stamp]
            held, on_disk = set(known), set(disk)
        else:
            inodes = index.inodes()
            moved, on_disk = _moved_stamps(self.conv_dir, self.restyled_dir, inodes)
            known = index.stamps_of(list(moved))
            todo = [(conv_id, stamp) for conv_id, stamp in moved.items() if known.get(conv_id) != stamp]
            held = set(inodes)
        removed = [conv_id for conv_id in held if conv_id not in on_disk]
        unreadable: list[Problem] = []
        if todo or removed:
            entries, sketches, unreadable = read_entries(self.dir, todo, self._given_quality)
            bad = {Path(str(p.file)).stem for p in unreadable}
            removed += [conv_id for conv_id in bad if conv_id in held]
            index.apply(entries, removed, sketches, self.quality.near_duplicate_similarity, _preferred)
        return sorted(unreadable, key=lambda p: str(p.file))

    def rendered(self, name: str, key: str, render: Callable[[Any], str]) -> list[str]:
        """One line per conversation as of the last :meth:`refresh`, newest first, made by
        ``render(row)`` and kept beside the index (:mod:`convogen_tui.core.keeping.rendered`:
        redone only for what changed). ``key`` names everything else the lines depend on."""

        def use() -> list[str]:
            index = self.index()
            path = None if index.path is None else self.index_path.parent / f"{name}.lines.json"
            return rendered_lines(index, path, key, render, self.quality.enabled("near-duplicate"))

        return self._rebuilding(use)

    def version_first_uses(self) -> dict[str, tuple[float, str]]:
        """``version id -> (earliest created_at, conv-gen sha256)`` as of the last :meth:`refresh`
        (one query, no row built)."""
        return self._rebuilding(lambda: self.index().first_uses())

    def generation(self) -> int:
        """A number that changes whenever the index does (cheap: one query), for pollers."""
        return self._rebuilding(lambda: self.index().generation())

    def index(self) -> Index:
        """The listing index, opened once per store (rebuilt when damaged or outdated)."""
        if self._index is None:
            path: Path | None = self.index_path
            try:
                self.index_path.parent.mkdir(exist_ok=True)
                self._index = Index(path, ConversationSummary, self.quality.key())
            except (OSError, sqlite3.Error):  # a read-only experiment still lists, from memory
                self._index = Index(None, ConversationSummary, self.quality.key())
            with contextlib.suppress(OSError):
                (self.index_path.parent / "index.json").unlink()  # the old whole-file index
        return self._index

    def _reset_index(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index.remove_files()
        else:
            for suffix in ("", "-journal"):
                with contextlib.suppress(OSError):
                    Path(f"{self.index_path}{suffix}").unlink()
        self._index = None

    def diversity_sketch(self) -> tuple[Any, Any]:
        """The bottom-k sketches of every conversation's words and word pairs (for distinct-1/2);
        shards a delete or an edit made dirty read their files again first."""
        return self._rebuilding(self._diversity_sketch)

    def _diversity_sketch(self) -> tuple[Any, Any]:
        if self._index is None:
            self.scan()  # a new index is filled from the files before its sketches mean anything
        index = self.index()
        for shard in index.dirty_shards():
            unigrams, bigrams = [], []
            for conv_id in index.shard_members(shard):
                try:
                    record = read_conversation(self.conversation_path(conv_id))
                except ConvogenError:
                    continue
                u, b = gram_hashes(dialog_words(record.conv))
                unigrams.append(u)
                bigrams.append(b)
            index.set_shard(shard, bottom_k(*unigrams), bottom_k(*bigrams))
        return index.sketches()

    def count(self) -> int:
        return len(_inodes(self.conv_dir))

    def count_restyled(self) -> int:
        return len(_inodes(self.restyled_dir))

    def done_keys(self) -> set[tuple[str, str, str]]:
        return {row.key for row in self.list()}

    def without_twin(self) -> list[str]:
        twins = _inodes(self.restyled_dir)
        return sorted(name[:-5] for name in _inodes(self.conv_dir) if name not in twins)

    def unreadable(self) -> list[Problem]:
        """Conversation files that cannot be read: each with its path and reason."""
        return self.scan().unreadable

    # review ------------------------------------------------------------------------------
    def set_mark(self, conv_id: str, mark: str, note: str | None = None) -> None:
        """Flag or keep a conversation; the mark is stored in its file under ``review``."""
        if mark not in ("", "flagged", "kept"):
            raise ConvogenError(Problem(None, f"unknown mark '{mark}'", hint="use flagged or kept"))
        with self._locked():
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
        """Move conversations with their twins and judgments to trash/<batch>/ as one batch, for undo."""
        with self._locked():
            for conv_id in conv_ids:
                source = self.conversation_path(conv_id)
                if not source.is_file():
                    raise ConvogenError(Problem(source, f"no conversation {conv_id} to delete"))
            seq = max((b.seq for b in self.batches()), default=0) + 1
            batch = f"{seq:06d}-{time.strftime('%Y%m%d-%H%M%S')}"
            target = self.trash_dir / batch
            info = {"seq": seq, "deleted_at": time.time(), "ids": list(conv_ids)}
            try:
                atomic_write_json(target / BATCH_FILE, info)
                for conv_id in conv_ids:
                    for folder, path in (
                        (CONVERSATIONS, self.conversation_path(conv_id)),
                        (RESTYLED, self.restyled_path(conv_id)),
                        (JUDGMENTS, self.judgment_path(conv_id)),
                    ):
                        if path.is_file():
                            (target / folder).mkdir(parents=True, exist_ok=True)
                            os.replace(path, target / folder / path.name)
            except OSError as exc:
                problem = storage_problem(exc, self.dir, "move files to the trash of")
                raise StorageError.of(exc, problem) from None
            return batch

    def batches(self) -> list[TrashBatch]:
        """Trash batches, oldest first: by sequence number (batches from before it come first)."""
        if not self.trash_dir.is_dir():
            return []
        found = []
        for path in self.trash_dir.iterdir():
            if not path.is_dir():
                continue
            data = _read_json(path / BATCH_FILE) or {}
            match = _BATCH_NAME.match(path.name)
            seq = data.get("seq") if isinstance(data.get("seq"), int) else int(match[1]) if match else 0
            deleted = data.get("deleted_at")
            if not isinstance(deleted, int | float):
                deleted = path.stat().st_mtime
            count = len(_inodes(path / CONVERSATIONS))
            found.append(TrashBatch(path.name, seq, float(deleted), count))
        found.sort(key=lambda b: (b.seq, b.deleted_at, b.name))
        return found

    def trash_batches(self) -> list[str]:
        return [b.name for b in self.batches()]

    def trash_count(self) -> int:
        return sum(b.conversations for b in self.batches())

    def undo(self, batch: str | None = None) -> list[str]:
        """Put a deleted batch back (the latest by default); returns the restored ids."""
        with self._locked():
            batches = self.trash_batches()
            if not batches:
                raise ConvogenError(Problem(self.trash_dir, "nothing to undo: the trash is empty"))
            batch = batch or batches[-1]
            source = self.trash_dir / batch
            if batch not in batches:
                raise ConvogenError(
                    Problem(
                        self.trash_dir,
                        f"no trash batch '{batch}'",
                        hint="see them with: convogen undo EXPT --list",
                    )
                )
            moves = []
            for folder, dest_dir in (
                (CONVERSATIONS, self.conv_dir),
                (RESTYLED, self.restyled_dir),
                (JUDGMENTS, self.judgments_dir),
            ):
                for path in sorted((source / folder).glob("*.json")):
                    dest = dest_dir / path.name
                    if dest.exists():
                        raise ConvogenError(
                            Problem(dest, "cannot restore: a file with this name exists again")
                        )
                    moves.append((path, dest))
            try:
                for path, dest in moves:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, dest)
            except OSError as exc:
                raise StorageError.of(exc, storage_problem(exc, self.dir, "restore files into")) from None
            shutil.rmtree(source, ignore_errors=True)
            return sorted({dest.stem for _, dest in moves if dest.parent == self.conv_dir})

    def empty_trash(self) -> int:
        with self._locked():
            count = self.trash_count()
            shutil.rmtree(self.trash_dir, ignore_errors=True)
            return count

    def _batch_holding(self, conv_id: str) -> str | None:
        """The trash batch a conversation was deleted into (the latest, if several)."""
        for batch in reversed(self.trash_batches()):
            if (self.trash_dir / batch / CONVERSATIONS / f"{conv_id}.json").is_file():
                return batch
        return None


_T = TypeVar("_T")
POOL_MIN_FILES = 400  # fewer files are read faster in this process than by starting others
CHUNK = 250  # files a worker reads per task


def read_entries(
    expt_dir: Path, todo: Sequence[tuple[str, Stamp]], quality: ResolvedQuality | None
) -> tuple[list[Entry], Sketches, list[Problem]]:
    """Summaries of these conversation files, with their n-gram sketches by shard and the files
    that cannot be read; many files are read by a process per usable core. ``quality``: the
    thresholds for every file, or None for each file its own version's."""
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if len(todo) < POOL_MIN_FILES or workers < 2:
        return _read_chunk(expt_dir, todo, quality)
    # in shard order: a chunk's sketches then cover a shard or two, and merging them here stays cheap
    todo = sorted(todo, key=lambda item: shard_of(item[0]))
    chunks = [list(todo[i : i + CHUNK]) for i in range(0, len(todo), CHUNK)]
    entries: list[Entry] = []
    problems: list[Problem] = []
    sketches: Sketches = {}
    context = multiprocessing.get_context("spawn")  # forking a process that runs threads (the app) is unsafe
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        for found, shards, bad in pool.map(_read_chunk, repeat(expt_dir), chunks, repeat(quality)):
            entries += found
            problems += bad
            for shard, (unigrams, bigrams) in shards.items():
                if shard in sketches:
                    unigrams = bottom_k(sketches[shard][0], unigrams)
                    bigrams = bottom_k(sketches[shard][1], bigrams)
                sketches[shard] = (unigrams, bigrams)
    return entries, sketches, problems


def _read_chunk(
    expt_dir: Path, todo: Sequence[tuple[str, Stamp]], quality: ResolvedQuality | None
) -> tuple[list[Entry], Sketches, list[Problem]]:
    conv_dir, restyled_dir = Path(expt_dir) / CONVERSATIONS, Path(expt_dir) / RESTYLED
    by_version = QualityByVersion(Path(expt_dir)) if quality is None else None
    entries: list[Entry] = []
    problems: list[Problem] = []
    grams: dict[int, tuple[list[Any], list[Any]]] = {}
    for conv_id, stamp in todo:
        path = conv_dir / f"{conv_id}.json"
        try:
            record = read_conversation(path)
        except ConvogenError as exc:
            if path.exists():  # else deleted (or moved to the trash) while we listed: gone, not unreadable
                problems.append(exc.problems[0] if exc.problems else Problem(path, str(exc)))
            continue
        has_twin = stamp[2] != -1
        twin = None
        if has_twin:
            with contextlib.suppress(ConvogenError):
                twin = read_restyled(restyled_dir / path.name)
        dialog = parse_dialog(record.conv)
        tokens = [w for m in dialog.messages for w in m.words]
        thresholds = quality or by_version.for_pair(record, twin)  # type: ignore[union-attr]
        summary = _summarize(conv_id, record, twin, has_twin, [stamp[0], stamp[1]], thresholds, dialog)
        summary.words, summary.mtld = len(tokens), round(mtld(tokens), 3)
        crcs = word_crcs(tokens)
        unigrams, bigrams = gram_hashes(tokens, crcs)
        shard = grams.setdefault(shard_of(conv_id), ([], []))
        shard[0].append(unigrams)
        shard[1].append(bigrams)
        crc = zlib.crc32(record.conv.encode("utf-8"))
        entries.append(Entry(conv_id, stamp, summary, signature_of(tokens, crcs), crc))
    sketches = {shard: (bottom_k(*u), bottom_k(*b)) for shard, (u, b) in grams.items()}
    return entries, sketches, problems


RACY_S = 2.0  # a folder changed this recently may change again within its timestamp's resolution


def _folder_stamps(*folders: Path) -> str | None:
    """The folders' mtime, size and inode, or None when one changed too recently to trust (a
    rename in the same clock tick would leave its mtime as it was)."""
    parts = []
    now = time.time()
    for folder in folders:
        try:
            st = os.stat(folder)
        except OSError:
            parts.append("-")
            continue
        if now - st.st_mtime < RACY_S:
            return None
        parts.append(f"{st.st_mtime_ns}:{st.st_size}:{st.st_ino}")
    return ",".join(parts)


def _problems_to_json(problems: Sequence[Problem]) -> str:
    return json.dumps([{"file": str(p.file), "message": p.message, "hint": p.hint} for p in problems])


def _problems_from_json(text: str | None) -> list[Problem]:
    data = json.loads(text or "[]")
    if not isinstance(data, list):
        raise Damaged("unreadable")
    return [Problem(Path(p["file"]), p["message"], hint=p.get("hint")) for p in data]


def _preferred(mark: str, flags: str) -> bool:
    """A near-duplicate group keeps its earliest conversation that is kept or has no flag."""
    return mark == "kept" or not flags


def _scan(folder: Path) -> dict[str, list[int]]:
    """name -> [mtime_ns, size, inode] of the .json files directly in a folder."""
    out: dict[str, list[int]] = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if name.endswith(".json") and not name.startswith("."):
                    with contextlib.suppress(FileNotFoundError):  # gone since the folder was read
                        stat = entry.stat()
                        out[name] = [stat.st_mtime_ns, stat.st_size, stat.st_ino]
    except FileNotFoundError:
        pass
    return out


def _inodes(folder: Path) -> dict[str, int]:
    """name -> inode of the .json files directly in a folder: the folder's own listing, no stat."""
    try:
        with os.scandir(folder) as entries:
            return {
                e.name: e.inode() for e in entries if e.name.endswith(".json") and not e.name.startswith(".")
            }
    except FileNotFoundError:
        return {}


def _disk_stamps(conv_dir: Path, restyled_dir: Path) -> dict[str, Stamp]:
    """id -> stamp of every conversation on disk (a stat of every file)."""
    twins = _scan(restyled_dir)
    out: dict[str, Stamp] = {}
    for name, (mtime, size, ino) in _scan(conv_dir).items():
        t_mtime, t_size, t_ino = twins.get(name, (-1, -1, -1))
        out[name[:-5]] = (mtime, size, t_mtime, t_size, ino, t_ino)
    return out


def _moved_stamps(
    conv_dir: Path, restyled_dir: Path, known: dict[str, tuple[int, int]]
) -> tuple[dict[str, Stamp], set[str]]:
    """id -> stamp of the conversations whose file or twin is new or was replaced (a name or an
    inode the index has not seen; ``known``: id -> inodes), and the ids of every conversation on
    disk. The folders' listings give names and inodes without a stat; only those files are stat'ed."""
    twin_inodes = _inodes(restyled_dir)
    out: dict[str, Stamp] = {}
    on_disk: set[str] = set()
    for name, ino in _inodes(conv_dir).items():
        conv_id, t_ino = name[:-5], twin_inodes.get(name, -1)
        on_disk.add(conv_id)
        if known.get(conv_id) == (ino, t_ino):
            continue
        try:
            st = os.stat(conv_dir / name)
        except FileNotFoundError:
            on_disk.discard(conv_id)  # deleted since the folder was read
            continue
        try:
            tw = os.stat(restyled_dir / name) if t_ino != -1 else None
        except FileNotFoundError:
            tw = None
        twin = (tw.st_mtime_ns, tw.st_size, tw.st_ino) if tw is not None else (-1, -1, -1)
        out[conv_id] = (st.st_mtime_ns, st.st_size, twin[0], twin[1], st.st_ino, twin[2])
    return out, on_disk


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
        version=version_of(provenance),
    )
