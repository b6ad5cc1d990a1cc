"""The seeds a user picked in the app, remembered per experiment across restarts.

Stored in ``<experiment>/.convogen/picks.json`` (beside the listing index; a copied experiment
starts without it). Picks are tweet ids, so they survive edits to the seed file; ids no longer in
it are dropped when the seeds are read. An unreadable file counts as no picks: it is only a
convenience, and the next pick writes a good one.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from convogen_tui.core.keeping.files import atomic_write_json

PICKS_FILE = Path(".convogen") / "picks.json"
PICKS_VERSION = 1


class PickState(BaseModel):
    """What the Seeds and Generate screens were set to when the app last saw this experiment."""

    model_config = ConfigDict(extra="ignore")

    schema_version: int = PICKS_VERSION
    picked: list[str] = Field(default_factory=list)  # tweet ids, in pick order
    persona_choice: str = "random"  # "random", "all" or a persona label


def picks_path(expt_dir: Path) -> Path:
    return Path(expt_dir) / PICKS_FILE


def load_picks(expt_dir: Path) -> PickState:
    path = picks_path(expt_dir)
    try:
        return PickState.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError):
        return PickState()


def save_picks(expt_dir: Path, state: PickState) -> None:
    """Write the picks; a read-only experiment simply does not remember them."""
    with contextlib.suppress(OSError):
        atomic_write_json(picks_path(expt_dir), state.model_dump())
