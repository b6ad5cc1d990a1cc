"""Lines rendered from the listing, kept beside the index and redone only for what changed.

``convogen show EXPT`` prints one line per conversation. At 100,000 conversations building every
row from the index and formatting it costs more than a second, while between two listings mostly
nothing, or a handful of conversations, changed. So the lines are kept in
``EXPT/.convogen/<name>.lines.json`` with the index's generation they were made at and a ``key``
for everything else they depend on (the caller's: version names, judgments, time zone). The next
listing prints them as they are when the generation and key are the same, redoes only the
conversations the index's change log names when only the generation moved, and renders everything
again otherwise (a different key, a log that does not reach back, a file that cannot be read).

The file is a cache: written whole through a temporary file and a rename, never trusted beyond
its own checks, and deleting it costs one full rendering.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from convogen_tui.core.errors import StorageError
from convogen_tui.core.keeping.files import atomic_write_text
from convogen_tui.core.keeping.index import Index

CACHE_VERSION = 1


def rendered_lines(
    index: Index, path: Path | None, key: str, render: Callable[[Any], str], flag_near: bool = True
) -> list[str]:
    """One line per conversation, newest first, as ``render(row)`` makes them (see the module);
    ``flag_near``: as :meth:`Index.rows`."""
    generation = index.generation()
    cached = _load(path, key)
    if cached is not None and cached["generation"] == generation:
        return list(cached["lines"])
    changed = index.changed_since(cached["generation"]) if cached is not None else None
    if cached is None or changed is None:
        rows = index.rows(flag_near)
        entries = [(row.created_at, row.id, render(row)) for row in rows]
    else:
        kept = zip(cached["created"], cached["ids"], cached["lines"], strict=True)
        entries = [entry for entry in kept if entry[1] not in changed]
        entries += [(row.created_at, row.id, render(row)) for row in index.rows_of(changed, flag_near)]
        entries.sort(key=lambda entry: (-entry[0], entry[1]))
    created, ids, lines = (list(column) for column in zip(*entries, strict=True)) if entries else ([], [], [])
    _save(path, {"version": CACHE_VERSION, "key": key, "generation": generation, "created": created,
                 "ids": ids, "lines": lines})  # fmt: skip
    return lines


def _load(path: Path | None, key: str) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or data.get("key") != key:
        return None
    columns = [data.get(name) for name in ("created", "ids", "lines")]
    if not isinstance(data.get("generation"), int) or not all(isinstance(c, list) for c in columns):
        return None
    if len({len(c) for c in columns}) != 1:  # type: ignore[arg-type]
        return None
    return data


def _save(path: Path | None, data: dict[str, Any]) -> None:
    """Written whole (``atomic_write_text``); a folder that cannot be written keeps none."""
    if path is None:
        return
    with contextlib.suppress(StorageError, OSError):
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        atomic_write_text(path, text, create_parents=False)
