"""The listing index: what the store knows of each conversation file without reading it again.

Why SQLite, and where: ``EXPT/.convogen/index.sqlite``, in rollback-journal mode (``journal_mode
=DELETE``), never WAL. Experiment folders often live on NFS home directories; WAL needs shared
memory between processes, which NFS cannot give, while the rollback journal needs only the POSIX
byte-range locks NFSv4 provides. SQLite lets one new, changed or deleted conversation cost one
row's work (plus its near-duplicate bucket and its shard's sketch) instead of rewriting a 20 MB
JSON file, and answers "what changed" from the files' stamps in one query.

Files stay the source of truth: a database that is missing, damaged (not SQLite, truncated, a
table missing, a value of the wrong type: the tables are STRICT) or of another version or
quality setting is deleted and rebuilt from the files. A folder that cannot be written gets the
same index in memory for the life of the process.

One row per conversation: its file's and twin's stamps, its MinHash signature, its shard, and one
column per field of :class:`ConversationSummary` (the columns are derived from the dataclass, so a
new per-conversation field, a version or a judge's score, is one field there; the schema's hash is
part of the version, so an old index is rebuilt). Beside it:

- ``band``: the LSH bands of each signature; a new conversation is compared only with the
  conversations that share one of its bands, and ``edge`` keeps the pairs found similar; the
  groups those edges make are recomputed only where an edge came or went (``near``).
- ``shard``: per shard of conversations (a hash of the id), bottom-k sketches of its word and
  word-pair hashes for distinct-1/2. A new conversation is merged in; a deleted or changed one
  marks its shard dirty, and only dirty shards read their files again when diversity is asked.
- ``meta``: version, quality key, and ``generation``, bumped by every change, so readers (the
  app's screens) can tell cheaply whether anything changed.
- ``change``: which conversations each recent generation changed (their row, or their place in a
  near-duplicate group), so a reader holding something built at an older generation (``convogen
  show``'s rendered lines) redoes only those; ``meta.logged_from`` says how far back it goes.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from convogen_tui.core.judging.diversity import SKETCH_K, bottom_k
from convogen_tui.core.judging.neardup import band_keys, candidate_pairs, similarity

INDEX_VERSION = 6  # bump when what a row means changes (the schema's own hash is added to it)
SHARDS = 256
# conversation mtime_ns and size, twin mtime_ns and size, conversation and twin inode (-1: no twin)
Stamp = tuple[int, int, int, int, int, int]


@dataclass
class Entry:
    """What reading one conversation file gives the index."""

    id: str
    stamp: Stamp
    summary: Any  # a ConversationSummary
    sig: str | None
    text_crc: int  # of the conversation's text: a mark changes the file, not the words


BAND_ID_INDEX = "CREATE INDEX IF NOT EXISTS band_id ON band (id)"  # for forgetting a conversation's bands
BULK = 400  # a first listing of this many conversations builds the band_id index after its rows
LOG_MAX_IDS = 5_000  # a change of more conversations than this is not logged: readers start over
LOGGED = 500  # generations whose changes are kept
Sketches = dict[int, tuple[np.ndarray, np.ndarray]]  # shard -> bottom-k of word and word-pair hashes


def shard_of(conv_id: str) -> int:
    return zlib.crc32(conv_id.encode("utf-8")) % SHARDS


class Damaged(Exception):
    """The index cannot be trusted: rebuild it from the files."""


class Index:
    """The index database of one experiment (see the module's docstring)."""

    def __init__(self, path: Path | None, summary_type: type, quality_key: str) -> None:
        self.path = path
        self.summary_type = summary_type
        self.columns = [f.name for f in fields(summary_type) if f.name != "near_duplicate_of"]  # id first
        kinds = {f.name: str(f.type) for f in fields(summary_type)}
        self._lists = {name for name, kind in kinds.items() if kind == "list[str]"}
        self._bools = {name for name, kind in kinds.items() if kind == "bool"}
        # any other type (a dict of scores, an optional number) is kept as JSON text
        self._json = {
            name for name, kind in kinds.items() if kind not in ("str", "int", "float", "bool", "list[str]")
        }
        types = {f.name: str(f.type) for f in fields(summary_type)}
        self.version = f"{INDEX_VERSION}:{zlib.crc32(repr(sorted(types.items())).encode()):08x}"
        self.quality_key = quality_key
        self.db = self._open()

    # opening ------------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        """The database, rebuilt empty when damaged or of another version or quality setting."""
        if self.path is None:
            return self._create(":memory:")
        try:
            db = self._connect(str(self.path))
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            same = meta.get("version") == self.version and meta.get("quality") == self.quality_key
            if same and "generation" in meta and _schema(db) == self._expected_schema():
                return db
            db.close()
        except sqlite3.DatabaseError:
            pass
        self.remove_files()
        return self._create(str(self.path))

    def _expected_schema(self) -> list[tuple[str, str]]:
        fresh = self._create(":memory:")
        try:
            return _schema(fresh)
        finally:
            fresh.close()

    def remove_files(self) -> None:
        if self.path is not None:
            for suffix in ("", "-journal"):
                with contextlib.suppress(OSError):
                    Path(f"{self.path}{suffix}").unlink()

    def _connect(self, where: str) -> sqlite3.Connection:
        db = sqlite3.connect(where, timeout=60, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=DELETE")  # never WAL: see the module's docstring
        # pages kept in memory (up to 64 MiB, used only as the database grows): the first listing
        # inserts 1.6 million band rows at random places, which a 2 MiB cache turns into page I/O
        db.execute("PRAGMA cache_size=-65536")
        return db

    def _create(self, where: str) -> sqlite3.Connection:
        db = self._connect(where)
        columns = ", ".join(f"{name} {self._sql_type(name)}" for name in self.columns if name != "id")
        db.executescript(
            f"""
                CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) STRICT;
                CREATE TABLE IF NOT EXISTS conv (
                    id TEXT PRIMARY KEY, stamp TEXT NOT NULL, ino INTEGER NOT NULL,
                    twin_ino INTEGER NOT NULL, sig TEXT, shard INTEGER NOT NULL,
                    text_crc INTEGER NOT NULL, {columns}) STRICT;
                CREATE TABLE IF NOT EXISTS band (key BLOB, id TEXT, PRIMARY KEY (key, id))
                    STRICT, WITHOUT ROWID;
                {BAND_ID_INDEX};
                CREATE TABLE IF NOT EXISTS edge (a TEXT, b TEXT, PRIMARY KEY (a, b)) STRICT, WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS near (id TEXT PRIMARY KEY, of TEXT NOT NULL) STRICT;
                CREATE TABLE IF NOT EXISTS change (generation INTEGER NOT NULL, id TEXT NOT NULL) STRICT;
                CREATE INDEX IF NOT EXISTS change_generation ON change (generation);
                CREATE TABLE IF NOT EXISTS shard (
                    shard INTEGER PRIMARY KEY, unigrams BLOB, bigrams BLOB, dirty INTEGER NOT NULL) STRICT;
                """
        )
        with _transaction(db):
            generation = str(time.time_ns())  # a rebuilt index never repeats an earlier one's
            db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [
                    ("version", self.version),
                    ("quality", self.quality_key),
                    ("generation", generation),
                    ("logged_from", generation),
                ],
            )
        return db

    def _sql_type(self, name: str) -> str:
        kind = next(str(f.type) for f in fields(self.summary_type) if f.name == name)
        if name in self._bools or kind == "int":
            return "INTEGER NOT NULL"
        if kind == "float":
            return "REAL NOT NULL"
        if name in self._json:
            return "TEXT"
        return "TEXT NOT NULL"  # str, and lists of str joined with \x1f

    # reading ------------------------------------------------------------------------------
    def generation(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        if row is None:
            raise Damaged("no generation")
        return int(row[0])

    def stamps(self) -> dict[str, Stamp]:
        return {conv_id: _stamp(stamp) for conv_id, stamp in self.db.execute("SELECT id, stamp FROM conv")}

    def inodes(self) -> dict[str, tuple[int, int]]:
        """id -> (inode, twin's inode or -1) of every conversation, as last read."""
        return {i: (ino, twin) for i, ino, twin in self.db.execute("SELECT id, ino, twin_ino FROM conv")}

    def stamps_of(self, ids: Sequence[str]) -> dict[str, Stamp]:
        """:meth:`stamps` of these conversations only."""
        out: dict[str, Stamp] = {}
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            for conv_id, stamp in self.db.execute(f"SELECT id, stamp FROM conv WHERE id IN ({marks})", chunk):
                out[conv_id] = _stamp(stamp)
        return out

    def rows(self, flag_near: bool = True) -> list[Any]:
        """Every summary, newest first, with ``near_duplicate_of`` filled in (and the
        ``near-duplicate`` flag added, when ``flag_near``)."""
        return self._rows("", [], dict(self.db.execute("SELECT id, of FROM near")), flag_near)

    def rows_of(self, ids: Iterable[str], flag_near: bool = True) -> list[Any]:
        """:meth:`rows` of these conversations only (those still in the index), newest first."""
        out: list[Any] = []
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            near = dict(self.db.execute(f"SELECT id, of FROM near WHERE id IN ({marks})", chunk))
            out += self._rows(f"WHERE id IN ({marks})", chunk, near, flag_near)
        out.sort(key=lambda row: (-row.created_at, row.id))
        return out

    def first_uses(self) -> dict[str, tuple[float, str]]:
        """``version id -> (earliest created_at, conv-gen sha256)`` (``versions.first_uses``)."""
        query = "SELECT version, MIN(created_at), template_sha256 FROM conv GROUP BY version"
        return {version: (created, sha) for version, created, sha in self.db.execute(query)}

    def changed_since(self, generation: int) -> set[str] | None:
        """The conversations changed (added, edited, removed, regrouped) after ``generation``; None
        when the log does not reach back that far (then everything may have changed)."""
        logged_from = self.meta("logged_from")
        if logged_from is None or generation < int(logged_from) or generation > self.generation():
            return None
        return {r[0] for r in self.db.execute("SELECT id FROM change WHERE generation > ?", (generation,))}

    def _rows(self, where: str, params: list[str], near: dict[str, str], flag_near: bool) -> list[Any]:
        order = [f.name for f in fields(self.summary_type)]
        select = ", ".join(
            "'' AS near_duplicate_of" if name == "near_duplicate_of" else name for name in order
        )
        lists = [i for i, name in enumerate(order) if name in self._lists]
        bools = [i for i, name in enumerate(order) if name in self._bools]
        as_json = [i for i, name in enumerate(order) if name in self._json and name != "near_duplicate_of"]
        make = self.summary_type
        out = []
        query = f"SELECT {select} FROM conv {where} ORDER BY created_at DESC, id"
        for values in self.db.execute(query, params):
            if lists or bools or as_json:
                values = list(values)
                for i in lists:
                    values[i] = values[i].split("\x1f") if values[i] else []
                for i in bools:
                    values[i] = bool(values[i])
                for i in as_json:
                    values[i] = json.loads(values[i])
            out.append(make(*values))
        if near:
            for row in out:
                of = near.get(row.id)
                if of:
                    row.near_duplicate_of = of
                    if flag_near:
                        row.flags.append("near-duplicate")
        return out

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, values: dict[str, str]) -> None:
        if all(self.meta(key) == value for key, value in values.items()):
            return  # no write, no lock: an unchanged listing leaves the database alone
        with _transaction(self.db):
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(values.items()))

    def shard_members(self, shard: int) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM conv WHERE shard = ?", (shard,))]

    def dirty_shards(self) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT shard FROM shard WHERE dirty = 1")]

    def sketches(self) -> tuple[np.ndarray, np.ndarray]:
        """The bottom-k sketches of every shard merged: the experiment's words and word pairs."""
        uni, bi = [], []
        for u, b in self.db.execute("SELECT unigrams, bigrams FROM shard"):
            uni.append(np.frombuffer(u or b"", dtype="<u8").astype(np.uint64))
            bi.append(np.frombuffer(b or b"", dtype="<u8").astype(np.uint64))
        return bottom_k(*uni), bottom_k(*bi)

    # writing ------------------------------------------------------------------------------
    def apply(
        self,
        entries: Sequence[Entry],
        removed: Iterable[str],
        sketches: Sketches,
        threshold: float,
        preferred: Any,
    ) -> None:
        """Store new and changed conversations, forget removed ones, and update near-duplicate
        groups and shard sketches only where they changed. ``sketches``: the entries' n-grams by
        shard; ``preferred(mark, flags)``: a group keeps its earliest preferred (clean or kept) member."""
        removed = list(removed)
        with _transaction(self.db):
            old = self._text_crcs([e.id for e in entries])
            touched = self._forget([*removed, *(e.id for e in entries)])
            alone = not self.db.execute("SELECT 1 FROM conv LIMIT 1").fetchone()  # a first listing
            bulk = alone and len(entries) >= BULK
            if bulk:  # an index is built faster from sorted rows than kept up row by row
                self.db.execute("DROP INDEX band_id")
            self._store(entries, old)
            if bulk:
                self.db.execute(BAND_ID_INDEX)
            for shard, (unigrams, bigrams) in sketches.items():
                self._merge_shard(shard, [unigrams], [bigrams])
            touched |= self._link(entries, threshold, alone)
            regrouped = self._regroup(touched | {e.id for e in entries}, preferred)
            self._mark_dirty({shard_of(i) for i in removed})
            self.db.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
            self._log(regrouped | set(removed) | {e.id for e in entries})

    def _log(self, ids: set[str]) -> None:
        """Note what this generation changed; a big change (a first listing) ends the log instead,
        and only the last LOGGED generations are kept."""
        generation = self.generation()
        if len(ids) > LOG_MAX_IDS:
            self.db.execute("DELETE FROM change")
            self.set_logged_from(generation)
            return
        self.db.executemany("INSERT INTO change VALUES (?, ?)", ((generation, i) for i in ids))
        if generation - int(self.meta("logged_from") or generation) > 2 * LOGGED:
            self.db.execute("DELETE FROM change WHERE generation <= ?", (generation - LOGGED,))
            self.set_logged_from(generation - LOGGED)

    def set_logged_from(self, generation: int) -> None:
        self.db.execute("UPDATE meta SET value = ? WHERE key = 'logged_from'", (str(generation),))

    def _text_crcs(self, ids: Sequence[str]) -> dict[str, int]:
        out = {}
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            out.update(self.db.execute(f"SELECT id, text_crc FROM conv WHERE id IN ({marks})", chunk))
        return out

    def _forget(self, ids: Sequence[str]) -> set[str]:
        """Remove the rows, bands and edges of these ids; returns their former near neighbours."""
        neighbours: set[str] = set()
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            pairs = self.db.execute(f"SELECT a, b FROM edge WHERE a IN ({marks})", chunk).fetchall()
            neighbours.update(b for _, b in pairs)
            # edges are kept both ways: the reverse ones by their key, not by scanning for b
            self.db.executemany("DELETE FROM edge WHERE a = ? AND b = ?", [(b, a) for a, b in pairs])
            for sql in (
                f"DELETE FROM conv WHERE id IN ({marks})",
                f"DELETE FROM band WHERE id IN ({marks})",
                f"DELETE FROM edge WHERE a IN ({marks})",
                f"DELETE FROM near WHERE id IN ({marks})",
            ):
                self.db.execute(sql, chunk)
        return neighbours - set(ids)

    def _store(self, entries: Sequence[Entry], old_crcs: dict[str, int]) -> None:
        names = ["id", "stamp", "ino", "twin_ino", "sig", "shard", "text_crc"]
        names += [c for c in self.columns if c != "id"]
        sql = f"INSERT OR REPLACE INTO conv ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        self.db.executemany(sql, (self._values(e) for e in entries))
        self.db.executemany(
            "INSERT OR IGNORE INTO band VALUES (?, ?)",
            ((key, e.id) for e in entries if e.sig for key in band_keys(e.sig)),
        )
        # a changed text's old n-grams cannot be taken out of a sketch: its shard is read again later
        changed_text = {shard_of(e.id) for e in entries if e.id in old_crcs and old_crcs[e.id] != e.text_crc}
        self._mark_dirty(changed_text)

    def _values(self, e: Entry) -> list[Any]:
        summary = e.summary
        stamp = ",".join(map(str, e.stamp))
        values: list[Any] = [e.id, stamp, e.stamp[4], e.stamp[5], e.sig, shard_of(e.id), e.text_crc]
        for name in self.columns:
            if name == "id":
                continue
            value = getattr(summary, name)
            if name in self._lists:
                value = "\x1f".join(value)
            elif name in self._bools:
                value = int(value)
            elif name in self._json:
                value = json.dumps(value)
            values.append(value)
        return values

    def _merge_shard(self, shard: int, unigrams: list[np.ndarray], bigrams: list[np.ndarray]) -> None:
        row = self.db.execute(
            "SELECT unigrams, bigrams, dirty FROM shard WHERE shard = ?", (shard,)
        ).fetchone()
        if row is not None:
            unigrams = [np.frombuffer(row[0] or b"", dtype="<u8").astype(np.uint64), *unigrams]
            bigrams = [np.frombuffer(row[1] or b"", dtype="<u8").astype(np.uint64), *bigrams]
        self.set_shard(shard, bottom_k(*unigrams), bottom_k(*bigrams), dirty=bool(row and row[2]))

    def set_shard(self, shard: int, unigrams: np.ndarray, bigrams: np.ndarray, dirty: bool = False) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO shard VALUES (?, ?, ?, ?)",
            (
                shard,
                unigrams[:SKETCH_K].astype("<u8").tobytes(),
                bigrams[:SKETCH_K].astype("<u8").tobytes(),
                int(dirty),
            ),
        )

    def _mark_dirty(self, shards: Iterable[int]) -> None:
        self.db.executemany(
            "INSERT INTO shard VALUES (?, NULL, NULL, 1) ON CONFLICT (shard) DO UPDATE SET dirty = 1",
            ((s,) for s in shards),
        )

    def _link(self, entries: Sequence[Entry], threshold: float, alone: bool) -> set[str]:
        """Edges between each new signature and its bucket mates at ``threshold`` or above.
        ``alone``: the index holds nothing but these entries (a first listing)."""
        mates: set[str] = set()
        sigs = {e.id: e.sig for e in entries if e.sig}
        if alone:  # every mate is in this batch: found in memory, in one sort
            ids, texts = list(sigs), list(sigs.values())
            for i, j in candidate_pairs(texts):
                if similarity(texts[i], texts[j]) >= threshold:
                    self.db.executemany(
                        "INSERT OR IGNORE INTO edge VALUES (?, ?)", [(ids[i], ids[j]), (ids[j], ids[i])]
                    )
                    mates |= {ids[i], ids[j]}
            return mates
        for conv_id, sig in sigs.items():
            keys = band_keys(sig)
            marks = ",".join("?" * len(keys))
            found = self.db.execute(
                f"SELECT DISTINCT conv.id, conv.sig FROM band JOIN conv ON conv.id = band.id "
                f"WHERE band.key IN ({marks}) AND band.id != ?",
                [*keys, conv_id],
            ).fetchall()
            for other, other_sig in found:
                if other_sig and similarity(sig, other_sig) >= threshold:
                    self.db.executemany(
                        "INSERT OR IGNORE INTO edge VALUES (?, ?)", [(conv_id, other), (other, conv_id)]
                    )
                    mates.add(other)
        return mates

    def _regroup(self, ids: set[str], preferred: Any) -> set[str]:
        """Recompute the near-duplicate groups that hold any of ``ids`` (their edges changed);
        returns every conversation looked at (``ids`` and their groups' members)."""
        linked = {r[0] for r in self.db.execute("SELECT DISTINCT a FROM edge")} if len(ids) > 1000 else None
        alone = [i for i in ids if linked is not None and i not in linked]
        for chunk in _chunks(alone, 500):  # the first listing: most conversations have no mate
            self.db.execute(f"DELETE FROM near WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        done: set[str] = set(alone)
        visited: set[str] = set(ids)
        for start in ids:
            if start in done:
                continue
            group, queue = {start}, [start]
            while queue:
                current = queue.pop()
                for (other,) in self.db.execute("SELECT b FROM edge WHERE a = ?", (current,)):
                    if other not in group:
                        group.add(other)
                        queue.append(other)
            done |= group
            visited |= group
            self._set_keeper(sorted(group), preferred)
        return visited

    def _set_keeper(self, group: list[str], preferred: Any) -> None:
        marks = ",".join("?" * len(group))
        self.db.execute(f"DELETE FROM near WHERE id IN ({marks})", group)
        if len(group) < 2:
            return
        members = self.db.execute(
            f"SELECT id, created_at, mark, flags FROM conv WHERE id IN ({marks}) ORDER BY created_at, id",
            group,
        ).fetchall()
        if len(members) < 2:
            return
        keeper = next((m[0] for m in members if preferred(m[2], m[3])), members[0][0])
        self.db.executemany(
            "INSERT INTO near VALUES (?, ?)", [(m[0], keeper) for m in members if m[0] != keeper]
        )

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.close()


def _stamp(text: str) -> Stamp:
    parts = text.split(",")
    if len(parts) != 6:
        raise Damaged("stamp")
    return tuple(map(int, parts))  # type: ignore[return-value]


def _schema(db: sqlite3.Connection) -> list[tuple[str, str]]:
    """Every table and index as SQLite keeps its definition: a table dropped, renamed or altered
    (by a crash, a bad copy or a hand) makes the index untrusted."""
    return db.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    items = list(items)
    for start in range(0, len(items), size):
        yield items[start : start + size]
