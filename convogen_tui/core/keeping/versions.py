"""Prompt versions: every text that shapes a conversation, kept content-addressed, named v1, v2...

A version is the set of texts a conversation was made with: conv-gen.txt, conv-restyle.txt, the
persona texts, and the setup's sampling and generation blocks. Each text is kept once, as
``EXPT/.convogen/versions/texts/<sha256>.txt``, when a conversation is made with it (small and
deduplicated: an edit adds one file); ``versions.json`` gives each version a short name (``v1``,
``v2``, ... in order of first use) and its note. A conversation records its version's id in
``provenance.version``. Conversations made before this existed, or elsewhere, get a version by
their recorded conv-gen sha256 (their text is shown when it is kept, else "text not kept").
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from convogen_tui.core.errors import ConvogenError, Problem, StorageError
from convogen_tui.core.keeping.files import atomic_write_json, atomic_write_text, storage_problem
from convogen_tui.core.keeping.records import Provenance
from convogen_tui.core.making.experiment import CONV_TEMPLATE, RESTYLE_TEMPLATE, Experiment, Persona

VERSIONS_DIR = Path(".convogen") / "versions"
BOOK_FILE = "versions.json"
SAMPLING = "sampling"
GENERATION = "generation"
LEGACY = "conv-gen:"  # id prefix of a version known only by its conv-gen sha256
UNRECORDED = "unrecorded"  # files that recorded no template at all (the notebooks')
_NAME = re.compile(r"^v(\d+)$")


def text_sha(text: str) -> str:
    """The sha256 a template's provenance records (``Template.sha256``): of the UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class VersionTexts:
    """One version's texts by role (``conv-gen.txt``, ``motivations/distrust``, ``sampling``...)."""

    texts: Mapping[str, str]

    @property
    def hashes(self) -> dict[str, str]:
        return {role: text_sha(text) for role, text in sorted(self.texts.items())}

    @property
    def id(self) -> str:
        """The version's identity: the sha256 of its texts' hashes (the same texts, the same id)."""
        return text_sha(json.dumps(self.hashes, sort_keys=True))

    def with_persona(self, persona: Persona) -> VersionTexts:
        """These texts with one persona's texts as a job really used them."""
        texts = dict(self.texts)
        texts.update(_persona_texts([persona]))
        return VersionTexts(texts)


def _persona_texts(personas: Iterable[Persona]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in personas:
        for role, text in ((f"motivations/{p.motivation}", p.motivation_text),
                           (f"dispositions/{p.disposition}", p.disposition_text)):  # fmt: skip
            if out.setdefault(role, text) != text:  # one name, two texts: tell them apart by persona
                out[f"{role}@{p.motivation}"] = text
    return out


def experiment_texts(
    experiment: Experiment, conv_text: str | None = None, restyle_text: str | None = None
) -> VersionTexts | None:
    """The texts an experiment's files hold now (templates as given, else read); None if unreadable."""
    setup = experiment.setup
    if setup is None:
        return None
    try:
        if conv_text is None:
            conv_text = experiment.conv_template_path.read_text(encoding="utf-8-sig")
        if restyle_text is None:
            restyle_text = experiment.restyle_template_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    passes = {
        "generation": setup.generation.model_dump(),
        "restyle": setup.restyle.model_dump(),
        "prompt_format": setup.prompt_format,
        "constrain": setup.constrain,  # the dialog grammar (core/making/grammar.py) shapes it too
    }
    texts = {
        CONV_TEMPLATE: conv_text,
        RESTYLE_TEMPLATE: restyle_text,
        SAMPLING: json.dumps(setup.sampling.model_dump(), indent=2, sort_keys=True) + "\n",
        GENERATION: json.dumps(passes, indent=2, sort_keys=True) + "\n",
        **_persona_texts(experiment.personas()),
    }
    return VersionTexts(texts)


def version_of(provenance: Provenance | None) -> str:
    """A conversation's version id: recorded, else by its conv-gen sha256, else ``unrecorded``."""
    if provenance is None:
        return UNRECORDED
    if provenance.version:
        return provenance.version
    return LEGACY + provenance.template.sha256 if provenance.template.sha256 else UNRECORDED


class VersionEntry(BaseModel):
    """One named version: its texts' hashes by role (only conv-gen's for an old one), its note."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    texts: dict[str, str] = Field(default_factory=dict)
    first_used: float = 0.0
    note: str = ""

    @property
    def number(self) -> int:
        match = _NAME.match(self.name)
        return int(match[1]) if match else 0

    @property
    def legacy(self) -> bool:
        """Made before versions were kept (or elsewhere): only the conv-gen sha256 is known."""
        return self.id.startswith(LEGACY) or self.id == UNRECORDED


class _BookFile(BaseModel):
    schema_version: int = 1
    versions: list[VersionEntry] = Field(default_factory=list)


@dataclass(frozen=True)
class Change:
    """How one text differs between two versions: ``changed``, ``added``, ``removed``, ``unknown``."""

    role: str
    kind: str


class VersionBook:
    """An experiment's kept texts and named versions (``EXPT/.convogen/versions/``)."""

    def __init__(self, expt_dir: Path) -> None:
        self.dir = Path(expt_dir)
        self.folder = self.dir / VERSIONS_DIR
        self.texts_dir = self.folder / "texts"
        self.file = self.folder / BOOK_FILE

    # reading -----------------------------------------------------------------------------
    def entries(self) -> list[VersionEntry]:
        """Every named version, in name order; a damaged book reads as empty (see :meth:`_load`)."""
        return sorted(self._load().versions, key=lambda e: e.number)

    def by_id(self) -> dict[str, VersionEntry]:
        return {e.id: e for e in self.entries()}

    def text(self, sha: str) -> str | None:
        """A kept text by its sha256, or None when it was never kept here."""
        if not re.fullmatch(r"[0-9a-f]{64}", sha or ""):
            return None
        try:
            return (self.texts_dir / f"{sha}.txt").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def find(self, name: str) -> VersionEntry:
        """A version by name (``v3``, or ``3``); a clear error naming the known ones otherwise."""
        wanted = name if name.startswith("v") else f"v{name}"
        for entry in self.entries():
            if entry.name == wanted:
                return entry
        known = ", ".join(e.name for e in self.entries()) or "none yet"
        raise ConvogenError(
            Problem(self.file, f"no version '{name}'", hint=f"versions of this experiment: {known}")
        )

    def _load(self) -> _BookFile:
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
            return _BookFile.model_validate(data)
        except FileNotFoundError:
            return _BookFile()
        except (OSError, ValueError, ValidationError):
            return _BookFile()  # damaged: names are given again by first use (_keep_aside on write)

    # writing -----------------------------------------------------------------------------
    def keep(self, texts: VersionTexts, when: float | None = None) -> VersionEntry:
        """Keep a version's texts (each once) and name the version if it is new; returns its entry."""
        self._check_folder()
        for text in texts.texts.values():
            path = self.texts_dir / f"{text_sha(text)}.txt"
            if not path.is_file():
                atomic_write_text(path, text)
        with self._edit() as book:
            for entry in book.versions:
                if entry.id == texts.id:
                    return entry
            entry = VersionEntry(
                id=texts.id, name=_next_name(book), texts=texts.hashes, first_used=when or time.time()
            )
            book.versions.append(entry)
            return entry

    def name_all(self, first_use: Mapping[str, tuple[float, str]]) -> dict[str, VersionEntry]:
        """Name every version id not named yet, in order of first use (``id -> (time, conv sha)``).

        Old conversations' versions are named when a listing first meets them; returns every entry.
        """
        known = {e.id for e in self.entries()}
        new = sorted((t, i, sha) for i, (t, sha) in first_use.items() if i not in known)
        if not new:
            return self.by_id()
        try:
            with self._edit() as book:
                _append(book, new)
        except (StorageError, OSError):  # a read-only experiment: named for this listing only
            book = self._load()
            _append(book, new)
            return {e.id: e for e in book.versions}
        return self.by_id()

    def set_note(self, name: str, note: str) -> VersionEntry:
        target = self.find(name)
        with self._edit() as book:
            for entry in book.versions:
                if entry.id == target.id:
                    entry.note = note
                    return entry
        return target

    @contextlib.contextmanager
    def _edit(self) -> Iterator[_BookFile]:
        """Read, change and write versions.json under a file lock (runs and listings may race)."""
        self._check_folder()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError.of(exc, storage_problem(exc, self.folder)) from None
        lock = FileLock(str(self.folder / "versions.lock"), timeout=60, thread_local=False)
        try:
            lock.acquire()
        except Timeout:
            held = Problem(self.folder / "versions.lock", "held for a minute by another process")
            raise ConvogenError(held) from None
        try:
            book = self._load()
            if self.file.is_file() and not book.versions:
                self._keep_aside()
            yield book
            atomic_write_json(self.file, book.model_dump(mode="json"))
        finally:
            lock.release()

    def _check_folder(self) -> None:
        """Never create the experiment folder again: one moved away mid-run is an error."""
        if not self.dir.is_dir():
            gone = FileNotFoundError(2, "No such file or directory", str(self.dir))
            raise StorageError.of(gone, storage_problem(gone, self.dir))

    def _keep_aside(self) -> None:
        """A damaged versions.json is kept beside the new one, never silently overwritten."""
        with contextlib.suppress(OSError, ValueError, ValidationError):
            data = json.loads(self.file.read_text(encoding="utf-8"))
            _BookFile.model_validate(data)
            return  # readable and simply empty
        with contextlib.suppress(OSError):
            self.file.replace(self.file.with_name(f"{BOOK_FILE}.damaged-{int(time.time())}"))


def _append(book: _BookFile, new: list[tuple[float, str, str]]) -> None:
    """Name versions known only from conversations (``(first use, id, conv-gen sha)``), in order."""
    named = {e.id for e in book.versions}
    for when, version_id, sha in new:
        if version_id not in named:
            texts = {CONV_TEMPLATE: sha} if sha else {}
            book.versions.append(
                VersionEntry(id=version_id, name=_next_name(book), texts=texts, first_used=when)
            )
            named.add(version_id)


def _next_name(book: _BookFile) -> str:
    return f"v{max((e.number for e in book.versions), default=0) + 1}"


def changes(old: VersionEntry | None, new: VersionEntry) -> list[Change]:
    """The texts that differ from ``old`` to ``new``, by role (``unknown`` where a text is not kept)."""
    if old is None:
        return []
    out: list[Change] = []
    for role in sorted(set(old.texts) | set(new.texts)):
        a, b = old.texts.get(role), new.texts.get(role)
        if a == b:
            continue
        if a is None or b is None:
            incomplete = old.legacy or new.legacy
            out.append(Change(role, "unknown" if incomplete else ("added" if a is None else "removed")))
        else:
            out.append(Change(role, "changed"))
    return out


def describe_changes(found: list[Change]) -> str:
    """One line for `convogen versions`: ``conv-gen.txt, sampling changed``."""
    if not found:
        return ""
    by_kind: dict[str, list[str]] = {}
    for change in found:
        by_kind.setdefault(change.kind, []).append(change.role)
    words = {"changed": "changed", "added": "added", "removed": "removed", "unknown": "not kept in one"}
    return "; ".join(f"{', '.join(roles)} {words[kind]}" for kind, roles in by_kind.items())


def diff_versions(
    book: VersionBook, old: VersionEntry, new: VersionEntry, current: VersionTexts | None = None
) -> list[str]:
    """A unified diff of every text that changed (lines without newlines); a note per text not kept.

    ``current``: the texts on disk now, for a version not used yet (``current_entry``).
    """
    on_disk = {text_sha(t): t for t in current.texts.values()} if current is not None else {}

    def text(sha: str | None) -> str | None:
        return "" if not sha else on_disk.get(sha) or book.text(sha)

    lines: list[str] = []
    for role in sorted(set(old.texts) | set(new.texts)):
        a_sha, b_sha = old.texts.get(role), new.texts.get(role)
        if a_sha == b_sha:
            continue
        a, b = text(a_sha), text(b_sha)
        if a is None or b is None:
            which = old if a is None else new
            lines.append(f"{role}: text not kept for {which.name} (sha256 {(a_sha or b_sha or '')[:12]})")
            continue
        lines += [
            line.rstrip("\n")
            for line in difflib.unified_diff(
                a.splitlines(keepends=True),
                b.splitlines(keepends=True),
                f"{old.name}/{role}",
                f"{new.name}/{role}",
            )
        ]
    if not old.texts or not new.texts:
        lines.append("(the texts of a version made before versions were kept are not known)")
    return lines


def first_uses(rows: Iterable[Any]) -> dict[str, tuple[float, str]]:
    """``version id -> (earliest created_at, conv-gen sha256)`` over listing rows."""
    out: dict[str, tuple[float, str]] = {}
    for row in rows:
        seen = out.get(row.version)
        if seen is None or row.created_at < seen[0]:
            out[row.version] = (row.created_at, row.template_sha256)
    return out


class VersionKeeper:
    """What a run calls as it saves a pass: keeps the texts it used, returns their version id.

    ``rows`` lists the experiment's conversations: versions of conversations made before are
    named first (in order of first use), so names follow the order the texts were used in.
    """

    def __init__(self, experiment: Experiment, rows: Callable[[], Iterable[Any]]) -> None:
        self.experiment = experiment
        self.book = VersionBook(experiment.dir)
        self._rows = rows
        self._base: dict[tuple[str, str], VersionTexts | None] = {}
        self._kept: set[str] = set()

    def keep(self, conv_text: str, restyle_text: str, persona: Persona) -> str | None:
        """The version id of a pass made with these templates and persona (None: setup unreadable)."""
        key = (text_sha(conv_text), text_sha(restyle_text))
        if key not in self._base:
            self._base[key] = experiment_texts(self.experiment, conv_text, restyle_text)
        base = self._base[key]
        if base is None:
            return None
        if not self.experiment.dir.is_dir():
            return base.id  # moved away mid-run: the save that follows says so, with its folder
        texts = base.with_persona(persona)
        if texts.id not in self._kept:
            if not self._kept:
                self.book.name_all(first_uses(self._rows()))
            self.book.keep(texts)
            self._kept.add(texts.id)
        return texts.id


CURRENT = "current"  # the name of the texts on disk now, while no conversation was made with them


def current_entry(entries: Iterable[VersionEntry], current: VersionTexts | None) -> VersionEntry | None:
    """The version the files on disk make now: a named one, or ``current`` if not used yet."""
    if current is None:
        return None
    for entry in entries:
        if entry.id == current.id:
            return entry
    return VersionEntry(id=current.id, name=CURRENT, texts=current.hashes)


@dataclass(frozen=True)
class VersionRow:
    """One line of `convogen versions`: a version, when and how much it was used, what changed."""

    entry: VersionEntry
    conversations: int
    first_used: float
    last_used: float
    changed: str  # vs the previous version
    current: bool


def version_rows(
    book: VersionBook, rows: Iterable[Any], current: VersionTexts | None
) -> tuple[list[VersionRow], VersionEntry | None]:
    """Every version with its use (naming the ones first met now), and the current texts' entry."""
    rows = list(rows)
    entries = book.name_all(first_uses(rows))
    uses: dict[str, list[float]] = {}
    for row in rows:
        uses.setdefault(row.version, []).append(row.created_at)
    ordered = sorted(entries.values(), key=lambda e: e.number)
    now = current_entry(ordered, current)
    out: list[VersionRow] = []
    previous: VersionEntry | None = None
    for entry in ordered:
        times = uses.get(entry.id, [])
        first = min(times) if times else entry.first_used
        changed = describe_changes(changes(previous, entry)) if previous else "first version"
        out.append(VersionRow(entry, len(times), first, max(times, default=first), changed, now is entry))
        previous = entry
    return out, now


def stale_ids(rows: Iterable[Any], current: VersionTexts | None) -> set[str]:
    """Conversations made by a version other than the current texts' (none when those are unknown)."""
    if current is None:
        return set()
    current_id = current.id  # a hash of every text: once, not once per row
    return {row.id for row in rows if row.version != current_id}


def version_names(expt_dir: Path, rows: Iterable[Any]) -> dict[str, str]:
    """``version id -> name`` for every row (naming the versions first met now)."""
    return names_from_first_uses(expt_dir, first_uses(rows))


def names_from_first_uses(expt_dir: Path, uses: Mapping[str, tuple[float, str]]) -> dict[str, str]:
    """:func:`version_names` from first uses already known (``ConversationStore.version_first_uses``)."""
    return {version_id: e.name for version_id, e in VersionBook(expt_dir).name_all(uses).items()}


def default_pair(
    table: list[VersionRow], a_name: str | None = None
) -> tuple[VersionEntry, VersionEntry] | None:
    """The two versions to compare by default: ``a_name`` (else the one before) and the current
    texts' version (else the latest), among versions that made conversations."""
    used = [r for r in table if r.conversations]
    if len(used) < 2:
        return None
    b = next((r for r in used if r.current), used[-1])
    a = next((r for r in used if r.entry.name == a_name and r is not b), None)
    if a is None:
        before = [r for r in used if r.entry.number < b.entry.number]
        a = before[-1] if before else next(r for r in used if r is not b)
    return a.entry, b.entry
