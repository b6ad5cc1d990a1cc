"""Editors bound to files: a dirty mark, in step with the disk, saves that never overwrite unasked.

:class:`EditedFile` joins a TextArea to a :class:`~convogen_tui.core.keeping.tracked.TrackedFile`. The
screens that hold editors poll them every second: a file changed only on disk is reloaded (as an
edit, so ctrl+z brings the old text back); a file changed on both sides is reported once, and the
next save asks the user to reload, overwrite or look at the differences. Screens with editors
implement :class:`KeepsEdits`, which quit, close and switching experiments ask before leaving.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

from textual.widget import Widget
from textual.widgets import TextArea

from convogen_tui.core.errors import StorageError
from convogen_tui.core.keeping.tracked import DiskChange, FileConflict, TrackedFile, stamp
from convogen_tui.tui.screens.choice import ChoiceDialog, DiffDialog

DIRTY = " ●"


class EditedFile:
    """One file shown in one editor."""

    def __init__(self, path: Path, label: str | None = None) -> None:
        self.tracked = TrackedFile(Path(path))
        self.label = label or Path(path).name
        self.area: TextArea | None = None

    @property
    def path(self) -> Path:
        return self.tracked.path

    def read(self) -> str:
        """The file's text, now the base of the editor (call before composing the editor)."""
        return self.tracked.read()

    def bind(self, area: TextArea) -> TextArea:
        self.area = area
        return area

    @property
    def text(self) -> str:
        assert self.area is not None, "bind the editor first"
        return self.area.text

    @property
    def dirty(self) -> bool:
        return self.area is not None and self.tracked.is_dirty(self.area.text)

    def title(self) -> str:
        return self.label + (DIRTY if self.dirty else "")

    def load(self, text: str) -> None:
        """Put text in the editor as one edit (ctrl+z undoes it), keeping the cursor where it can."""
        area = self.area
        assert area is not None
        if area.text == text:
            return
        row, col = area.cursor_location
        area.replace(text, (0, 0), area.document.end, maintain_selection_offset=False)
        last = area.document.line_count - 1
        row = min(row, last)
        area.move_cursor((row, min(col, len(area.document.get_line(row)))))

    def poll(self) -> str | None:
        """Follow the disk; returns what to tell the user, if anything."""
        if self.area is None:
            return None
        change = self.tracked.poll(self.area.text)
        if change is DiskChange.RELOAD:
            self.load(self.tracked.base_text)
            return f"{self.label} changed on disk: reloaded"
        if change is DiskChange.DELETED:
            return f"{self.label} was deleted on disk; ctrl+s writes it again from the editor"
        if change is DiskChange.CONFLICT:
            seen = stamp(self.path)
            if seen != self.tracked.conflict_seen:
                self.tracked.conflict_seen = seen
                return (
                    f"{self.label} changed on disk, and you have unsaved edits here. "
                    "ctrl+s lets you reload, overwrite or compare"
                )
        return None

    def save(self, overwrite: bool = False) -> bool:
        """Write the editor's text; False when nothing needed writing. Raises FileConflict."""
        if self.area is None or not self.dirty:
            return False
        self.tracked.save(self.area.text, overwrite=overwrite)
        return True

    def take_disk(self) -> None:
        """Reload: the disk's version replaces the editor's (undoable with ctrl+z)."""
        self.load(self.tracked.read())

    def diff(self) -> str:
        """The differences from the disk's version to the editor's, as a unified diff."""
        disk = self.tracked.disk_text if self.tracked.disk_text is not None else self.tracked._read_disk()
        lines = difflib.unified_diff(
            (disk or "").splitlines(keepends=True),
            self.text.splitlines(keepends=True),
            fromfile=f"{self.label} (on disk)",
            tofile=f"{self.label} (here)",
        )
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines) or "no differences"


class KeepsEdits:
    """A screen with editors: what is unsaved, and saving it all (False if a conflict stopped it)."""

    def unsaved(self) -> list[str]:
        return [edited.label for edited in self.edited_files() if edited.dirty]

    def edited_files(self) -> list[EditedFile]:
        return []

    def save_unsaved(self, then: Callable[[], None]) -> None:
        """Save every dirty file, asking about conflicts one at a time; ``then`` once all are saved."""
        assert isinstance(self, Widget)
        save_files(self, [e for e in self.edited_files() if e.dirty], then)

    def after_save(self, changed: list[EditedFile]) -> None:
        """Re-read what depends on files just saved or reloaded."""


def save_files(node: Widget, files: list[EditedFile], then: Callable[[], None] | None = None) -> None:
    """Save files one by one; a conflict asks reload / overwrite / diff, then the rest go on.

    ``then`` runs when every file was saved or reloaded; cancelling a conflict stops there.
    The node, when it keeps edits, hears ``after_save`` with the files written or reloaded.
    """
    saved: list[EditedFile] = []
    reloaded: list[EditedFile] = []
    pending = list(files)

    def finish() -> None:
        if isinstance(node, KeepsEdits) and (saved or reloaded):
            node.after_save(saved + reloaded)
        said = []
        if saved:
            said.append("saved " + ", ".join(f.label for f in saved))
        if reloaded:
            said.append("reloaded " + ", ".join(f.label for f in reloaded) + " from disk")
        if said:
            node.notify("; ".join(said))
        if then is not None:
            then()

    def step() -> None:
        while pending:
            edited = pending[0]
            try:
                edited.save()
            except FileConflict:

                def decided(choice: str | None, edited: EditedFile = edited) -> None:
                    if choice == "overwrite":
                        edited.save(overwrite=True)
                        saved.append(pending.pop(0))
                        step()
                    elif choice == "reload":
                        edited.take_disk()
                        reloaded.append(pending.pop(0))
                        step()
                    # cancel: stop here; what was saved stays saved, nothing else happens

                resolve_conflict(node, edited, decided)
                return
            except StorageError as exc:  # one line naming the folder and what to do; the edit stays
                node.notify(str(exc), title="not saved", severity="error", timeout=12)
                return
            except OSError as exc:
                problem = exc.strerror or str(exc)
                node.notify(f"cannot write {edited.path}: {problem}", severity="error", timeout=12)
                return
            saved.append(pending.pop(0))
        finish()

    step()


def resolve_conflict(node: Widget, edited: EditedFile, decided: Callable[[str | None], None]) -> None:
    """Ask what to do with a file changed on disk and here: reload, overwrite, or diff first."""

    def answered(choice: str | None) -> None:
        if choice == "diff":
            node.app.push_screen(
                DiffDialog(f"{edited.label}: disk (-) and here (+)", edited.diff()), lambda _: ask()
            )
            return
        decided(choice)

    def ask() -> None:
        node.app.push_screen(
            ChoiceDialog(
                f"{edited.label} changed on disk since it was opened here, and you edited it too.",
                [
                    ("r", "reload", "reload: take the disk's version (ctrl+z undoes)"),
                    ("o", "overwrite", "overwrite: write your version over it"),
                    ("d", "diff", "show the differences"),
                ],
                cancel="cancel: keep editing, write nothing",
            ),
            answered,
        )

    ask()
