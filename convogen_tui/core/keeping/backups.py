"""The text a file had before a save the user did not make by hand, so it can be put back.

A run that saves edited templates first (the app's ctrl+g and ctrl+r) keeps each file's previous
text under ``EXPT/.convogen/backups/`` and says what changed in one line; restoring writes the
previous text back, through the same atomic writer as every save.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from convogen_tui.core.keeping.files import atomic_write_text

BACKUPS = Path(".convogen") / "backups"
SIDE = 30  # at most this many characters of each side in a summary


def backup_path(expt_dir: Path, path: Path) -> Path:
    return Path(expt_dir) / BACKUPS / Path(path).name


def keep_backup(expt_dir: Path, path: Path, previous: str) -> Path:
    """Keep ``previous`` as the text to restore ``path`` to; a newer backup replaces an older one."""
    target = backup_path(expt_dir, path)
    atomic_write_text(target, previous)
    return target


def restore_backup(expt_dir: Path, path: Path) -> bool:
    """Write the kept text back to ``path`` and drop the backup; False when none is kept."""
    kept = backup_path(expt_dir, path)
    if not kept.is_file():
        return False
    atomic_write_text(path, kept.read_text(encoding="utf-8"))
    kept.unlink()
    return True


def _clip(text: str, tail: bool = False) -> str:
    text = " ".join(text.split())
    if len(text) <= SIDE:
        return text
    return "…" + text[-(SIDE - 1) :] if tail else text[: SIDE - 1] + "…"


def _words_changed(old: str, new: str) -> str:
    """One changed line as ``"old words" -> "new words"``, with a word of context each side."""
    a, b = re.findall(r"\S+", old), re.findall(r"\S+", new)
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(len(a), len(b)) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    lo, hi_a, hi_b = max(0, start - 1), len(a) - max(0, end - 1), len(b) - max(0, end - 1)
    return f'"{_clip(" ".join(a[lo:hi_a]))}" -> "{_clip(" ".join(b[lo:hi_b]))}"'


def change_summary(old: str, new: str) -> str:
    """What an edit changed, in one line: the words of a one-line change, else the lines counted."""
    if old == new:
        return "no change"
    old_lines, new_lines = old.splitlines(), new.splitlines()
    ops = [op for op in difflib.SequenceMatcher(None, old_lines, new_lines).get_opcodes() if op[0] != "equal"]
    if len(ops) == 1 and ops[0][0] == "replace" and ops[0][2] - ops[0][1] == 1 == ops[0][4] - ops[0][3]:
        _tag, i, _i2, j, _j2 = ops[0]
        return _words_changed(old_lines[i], new_lines[j])
    added = sum(j2 - j1 for tag, _i1, _i2, j1, j2 in ops if tag in ("insert", "replace"))
    removed = sum(i2 - i1 for tag, i1, i2, _j1, _j2 in ops if tag in ("delete", "replace"))
    parts = [f"+{added} line{'s' if added != 1 else ''}"] if added else []
    parts += [f"-{removed} line{'s' if removed != 1 else ''}"] if removed else []
    return " ".join(parts) or "line endings changed"
