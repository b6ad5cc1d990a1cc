"""Atomic file writes: a crash or Ctrl-C never leaves half a file behind."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_text(path: Path, text: str) -> None:
    """Write through a hidden temporary file in the same folder, fsync, then rename over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def read_user_text(path: Path) -> str:
    """A user's text file as UTF-8 (BOM dropped, line endings kept); a clear error if it is not."""
    from convogen_tui.core.errors import ConvogenError, Problem

    try:
        with Path(path).open(encoding="utf-8-sig", newline="") as handle:
            return handle.read()
    except UnicodeDecodeError as exc:
        raise ConvogenError(
            Problem(path, f"not UTF-8 text at byte {exc.start}", hint="save the file as UTF-8")
        ) from None
