"""Atomic file writes, and file-system faults turned into messages that say what to do.

A write goes through a hidden temporary file in the same folder, is fsynced, then renamed over the
target: a crash, a Ctrl-C or a full disk never leaves half a file, and the old file stays whole.
The temporary file's name carries the writer's host and pid (``.NAME.<host>-<pid>-XXXX.tmp``), so
a later run can tell the leftovers of a killed process from a write in progress and remove them
(:func:`remove_stale_temps`). Files get the mode ``open()`` would give them: the existing file's
mode, or 0666 less the umask. Text passes through the one redaction step (``core.redact``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from convogen_tui.core.errors import ConvogenError, Problem, StorageError
from convogen_tui.core.keeping.redact import redact

MIN_FREE_BYTES = 64 * 2**20  # below this a run refuses to start: a full disk mid-run wastes tokens
FOREIGN_TEMP_AGE_S = 600.0  # a temp file from another host or an older ConvoGen older than this is stale
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[^.]+\.tmp$")
_LEGACY_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # tempfile.mkstemp's names before host/pid


def host_tag() -> str:
    """Eight hex digits naming this host in temporary file names."""
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def current_umask() -> int:
    """The process umask, read without changing it (Linux), else by setting it back at once."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# what a file-system error means for a folder, and what to do: (errnos, what happened, hint)
STORAGE_FAULTS: tuple[tuple[tuple[int, ...], str, str], ...] = (
    (
        (errno.ENOSPC, errno.EDQUOT),
        "the disk is full ({strerror})",
        "free some space, then run the same command again; nothing half-written was kept",
    ),
    (
        (errno.EROFS,),
        "it is on a read-only file system",
        "copy the experiment to a writable folder, or remount the disk read-write",
    ),
    (
        (errno.EACCES, errno.EPERM),
        "permission denied",
        "ask its owner for write access (chmod/chown), or copy the experiment to a folder you own",
    ),
    (
        (errno.ENOENT,),
        "it no longer exists (moved or deleted while running?)",
        "put it back, then run the same command again",
    ),
)


def storage_problem(exc: OSError, folder: Path, doing: str = "write in") -> Problem:
    """One line for a file-system error: which folder, what happened, what to do."""
    for codes, what, hint in STORAGE_FAULTS:
        if exc.errno in codes:
            happened = what.format(strerror=exc.strerror)
            return Problem(folder, f"cannot {doing} this folder: {happened}", hint=hint)
    return Problem(folder, f"cannot {doing} this folder ({exc.strerror or exc})")


def atomic_write_text(path: Path, text: str, create_parents: bool = True) -> None:
    """Write through a hidden temporary file in the same folder, fsync, then rename over.

    ``create_parents=False`` creates only the file's own folder: a store whose experiment folder
    vanished mid-run gets a clear error instead of a fresh, empty copy of the folder.
    A file-system error raises :class:`StorageError` naming the folder; no temporary file is left.
    """
    with atomic_writer(path, create_parents) as handle:
        handle.write(text)


class RedactingWriter:
    """A text file whose every write passes through the redaction step (whole rows at a time)."""

    def __init__(self, handle: TextIO) -> None:
        self._handle = handle

    def write(self, text: str) -> int:
        return self._handle.write(redact(text))


@contextlib.contextmanager
def atomic_writer(path: Path, create_parents: bool = True) -> Iterator[RedactingWriter]:
    """:func:`atomic_write_text` for text written piece by piece (an export streams its rows):
    the file appears, whole, only when the block ends without an exception."""
    path = Path(path)
    folder = path.parent
    try:
        if create_parents:
            folder.mkdir(parents=True, exist_ok=True)
        else:
            folder.mkdir(exist_ok=True)
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o666 & ~current_umask()
        fd, tmp = tempfile.mkstemp(
            dir=folder, prefix=f".{path.name}.{host_tag()}-{os.getpid()}-", suffix=".tmp"
        )
    except OSError as exc:
        raise StorageError.of(exc, storage_problem(exc, folder)) from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield RedactingWriter(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise StorageError.of(exc, storage_problem(exc, folder)) from None
        raise


def atomic_write_json(path: Path, data: Any, create_parents: bool = True) -> None:
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n", create_parents)


def read_user_text(path: Path) -> str:
    """A user's text file as UTF-8 (BOM dropped, line endings kept); a clear error if it is not."""
    try:
        with Path(path).open(encoding="utf-8-sig", newline="") as handle:
            return handle.read()
    except UnicodeDecodeError as exc:
        raise ConvogenError(
            Problem(path, f"not UTF-8 text at byte {exc.start}", hint="save the file as UTF-8")
        ) from None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale_temp(path: Path, now: float | None = None) -> bool:
    """A temporary file whose writer is gone: a dead pid on this host, or old and from elsewhere."""
    match = _TEMP.match(path.name)
    if match is None and not _LEGACY_TEMP.match(path.name):
        return False
    if match is not None and match["host"] == host_tag():
        return int(match["pid"]) != os.getpid() and not _process_alive(int(match["pid"]))
    try:
        age = (now or time.time()) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return age > FOREIGN_TEMP_AGE_S


def remove_stale_temps(folders: Iterable[Path]) -> list[Path]:
    """Remove the temporary files that crashed writers left in these folders; the paths removed."""
    removed: list[Path] = []
    now = time.time()
    for folder in folders:
        try:
            entries = list(Path(folder).iterdir())
        except OSError:
            continue
        for path in entries:
            if path.name.startswith(".") and path.name.endswith(".tmp") and is_stale_temp(path, now):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    return removed


def nearest_existing(path: Path) -> Path:
    """The folder itself, or the closest ancestor that exists (where it would be created)."""
    path = Path(path)
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def probe_writable(folder: Path, min_free: int = MIN_FREE_BYTES) -> list[Problem]:
    """Can files be written in ``folder`` (or where it would be created), with space to spare?

    Writes and removes a small temporary file, so read-only mounts, permissions and a full disk
    all show up before a run spends tokens.
    """
    target = nearest_existing(Path(folder))
    try:
        fd, tmp = tempfile.mkstemp(dir=target, prefix=f".probe.{host_tag()}-{os.getpid()}-", suffix=".tmp")
        try:
            os.write(fd, b"convogen write probe\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            Path(tmp).unlink(missing_ok=True)
    except OSError as exc:
        return [storage_problem(exc, target)]
    try:
        free = shutil.disk_usage(target).free
    except OSError:
        return []
    if free < min_free:
        return [
            Problem(
                target,
                f"only {free / 2**20:.1f} MiB free on this disk (a run needs at least "
                f"{min_free / 2**20:.0f} MiB to start)",
                hint="free some space or move the experiment to a bigger disk",
            )
        ]
    return []


def check_free_space(folder: Path, need_bytes: int) -> Problem | None:
    """A warning when a run's files will probably not fit the free space left."""
    try:
        free = shutil.disk_usage(nearest_existing(Path(folder))).free
    except OSError:
        return None
    if free >= need_bytes:
        return None
    return Problem(
        nearest_existing(Path(folder)),
        f"the run may write up to {need_bytes / 2**20:.0f} MiB but only {free / 2**20:.0f} MiB is free",
        hint="it stops cleanly when the disk fills; free space to finish it in one go",
        severity="warning",
    )
