"""Creating experiments: a new one from the bundled sample, or a copy of another, and their counts.

A copy takes the setup, templates and persona texts, never the conversations: a new experiment
starts empty. Setup paths that pointed into the source folder are rewritten to point into the copy,
in the same notebook-relative style, so the copy can be edited without touching its source.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.keeping.files import atomic_write_json
from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.core.keeping.versions import experiment_texts, stale_ids
from convogen_tui.core.making.experiment import (
    CONVERSATIONS,
    RESTYLED,
    SETUP_FILE,
    TRASH,
    load_experiment,
    resolve_setup_path,
)

SAMPLE_NAME = "sample"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SKIP = {CONVERSATIONS, RESTYLED, TRASH, ".convogen"}


def sample_experiment_dir(root: Path | None = None) -> Path:
    """The sample to start from: the root's own sample if it has one, else the one shipped here."""
    candidates = []
    if root is not None:
        candidates += [Path(root) / "inst-templates" / SAMPLE_NAME, Path(root) / SAMPLE_NAME]
    candidates.append(Path(__file__).resolve().parents[3] / "datasets" / "inst-templates" / SAMPLE_NAME)
    for candidate in candidates:
        if (candidate / SETUP_FILE).is_file():
            return candidate
    raise ConvogenError(Problem(None, "the sample experiment is not available", hint="copy an experiment"))


def experiments_base(root: Path) -> Path:
    """Where new experiments go: ``root/inst-templates`` (the original layout)."""
    return Path(root) / "inst-templates"


def check_new_name(root: Path, name: str) -> Path:
    """The folder for a new experiment; a clear error for a bad or taken name."""
    if not _NAME.match(name):
        raise ConvogenError(
            Problem(None, f"'{name}' is not a usable experiment name", hint="use letters, digits, - _ .")
        )
    target = experiments_base(root) / name
    if target.exists():
        raise ConvogenError(Problem(target, "already exists", hint="pick another name"))
    return target


def copy_experiment(source: Path, root: Path, name: str) -> Path:
    """Copy an experiment's setup, templates and persona files (not its conversations) to ``name``."""
    source = Path(source)
    target = check_new_name(root, name)
    shutil.copytree(source, target, ignore=lambda _dir, names: [n for n in names if n in _SKIP])
    setup_path = target / SETUP_FILE
    try:
        data: Any = json.loads(setup_path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return target  # an unreadable setup is copied as is; the Setup screen shows its problems
    if isinstance(data, dict):
        _rewrite_paths(data, source, target)
        atomic_write_json(setup_path, data)
    return target


def create_from_sample(root: Path, name: str) -> Path:
    return copy_experiment(sample_experiment_dir(root), root, name)


def _rewrite_paths(data: dict[str, Any], source: Path, target: Path) -> None:
    def moved(raw: str) -> str:
        resolved = resolve_setup_path(raw, source).resolve()
        try:
            inside = resolved.relative_to(source.resolve())
        except ValueError:
            return raw  # points at another experiment's file: keep sharing it
        marker = f"inst-templates/{source.name}/"
        if marker in raw:
            candidate = raw.replace(marker, f"inst-templates/{target.name}/")
            if resolve_setup_path(candidate, target).resolve() == (target / inside).resolve():
                return candidate
        return inside.as_posix()

    for profile in data.get("user_profiles") or []:
        if isinstance(profile, dict) and isinstance(profile.get("path"), str):
            profile["path"] = moved(profile["path"])
        for disposition in (profile.get("dispositions") if isinstance(profile, dict) else None) or []:
            if isinstance(disposition, dict) and isinstance(disposition.get("path"), str):
                disposition["path"] = moved(disposition["path"])
    seeds = data.get("seeds")
    if isinstance(seeds, str):
        old = resolve_setup_path(seeds, source)
        if old.is_file() and not resolve_setup_path(seeds, target).is_file():
            shutil.copy2(old, target / old.name)
            data["seeds"] = old.name


@dataclass
class ExperimentCounts:
    """One row of the Experiments screen."""

    path: Path
    name: str
    ok: bool
    problems: int
    conversations: int
    restyled: int
    flagged: int
    trash: int
    stale: int = 0  # made by a version other than the current texts' (core.keeping.versions)


def experiment_counts(path: Path) -> ExperimentCounts:
    """Counts and validity for one experiment; reads the listing index, so it is cheap when unchanged."""
    experiment = load_experiment(path)
    store = ConversationStore(path)
    rows = store.list()
    return ExperimentCounts(
        path=path,
        name=path.name,
        ok=experiment.ok,
        problems=len(experiment.errors),
        conversations=len(rows),
        restyled=sum(1 for r in rows if r.restyled),
        flagged=sum(1 for r in rows if r.mark == "flagged"),
        trash=store.trash_count(),
        stale=len(stale_ids(rows, experiment_texts(experiment))),
    )
