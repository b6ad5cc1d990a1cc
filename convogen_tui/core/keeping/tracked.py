"""A text file open for editing, kept in step with the disk: whose change is whose.

An editor remembers the version it last read or wrote (its *base*). Comparing the disk and the
editor with that base tells the three cases apart: only the disk changed (take it silently), only
the editor changed (an unsaved edit), or both changed (a conflict the user must decide). A save
checks the disk first, so it never writes over a newer file unasked. Polling is a ``stat``: cheap
enough to run every second for the handful of files an editor shows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.keeping.files import atomic_write_text, read_user_text

Stamp = tuple[int, int, int]  # mtime_ns, size, inode: an atomic replace changes the inode


def stamp(path: Path) -> Stamp | None:
    """What a file looks like from outside, without reading it; None when it is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class DiskChange(Enum):
    NONE = "none"  # nothing new on disk (or the disk now holds what the editor holds)
    RELOAD = "reload"  # the disk changed and the editor did not: take the disk's text
    CONFLICT = "conflict"  # both changed: the user decides (reload, overwrite, diff)
    DELETED = "deleted"  # the file went away; the editor keeps its text as an unsaved edit


class FileConflict(ConvogenError):
    """The file changed on disk since it was read, and the editor changed it too."""

    def __init__(self, path: Path, disk_text: str | None) -> None:
        super().__init__(
            Problem(
                path,
                "changed on disk since it was opened here",
                hint="reload it, overwrite it with your version, or look at the differences first",
            )
        )
        self.path = path
        self.disk_text = disk_text


@dataclass
class TrackedFile:
    """One file and the version of it the editor started from."""

    path: Path
    base_text: str = ""
    base_stamp: Stamp | None = None
    disk_text: str | None = None  # the newer disk version while in conflict (None if deleted)
    conflict_seen: Stamp | None = None  # the disk version already reported as a conflict

    def read(self) -> str:
        """Read the file as the new base; a missing file reads as empty."""
        self.base_stamp = stamp(self.path)
        self.base_text = self._read_disk() or ""
        self.disk_text = None
        self.conflict_seen = None
        return self.base_text

    def _read_disk(self) -> str | None:
        try:
            return read_user_text(self.path)
        except FileNotFoundError:
            return None
        except (OSError, ConvogenError):
            return None

    def poll(self, editor_text: str) -> DiskChange:
        """Compare disk, base and editor. On RELOAD the base is already the disk's text."""
        now = stamp(self.path)
        if now == self.base_stamp:
            return DiskChange.NONE
        if now is None:
            if self.base_stamp is None:
                return DiskChange.NONE
            self.base_stamp, self.base_text = None, ""
            return DiskChange.DELETED
        disk = self._read_disk()
        if disk is None:
            return DiskChange.NONE  # unreadable for a moment (being written): look again later
        if disk == self.base_text or disk == editor_text:
            self.base_stamp, self.base_text, self.disk_text = now, disk, None
            return DiskChange.NONE
        if editor_text == self.base_text:
            self.base_stamp, self.base_text, self.disk_text = now, disk, None
            return DiskChange.RELOAD
        self.disk_text = disk
        return DiskChange.CONFLICT

    def is_dirty(self, editor_text: str) -> bool:
        return editor_text != self.base_text

    def conflict(self) -> FileConflict | None:
        """The conflict a save would hit now, if any (the disk changed and differs from the base)."""
        now = stamp(self.path)
        if now == self.base_stamp:
            return None
        if now is None:
            return None  # deleted outside: writing brings it back, nothing newer is lost
        disk = self._read_disk()
        if disk == self.base_text:
            self.base_stamp = now  # touched, not changed
            return None
        return FileConflict(self.path, disk)

    def save(self, text: str, overwrite: bool = False) -> None:
        """Write ``text`` as the new base; raises FileConflict if the disk changed, unless ``overwrite``."""
        if not overwrite:
            problem = self.conflict()
            if problem is not None:
                self.disk_text = problem.disk_text
                raise problem
        atomic_write_text(self.path, text)
        self.base_text, self.base_stamp = text, stamp(self.path)
        self.disk_text = None
        self.conflict_seen = None
