"""``convogen export --format hf``: a Hugging Face ``datasets`` dataset with Parquet and a card.

The folder holds what ``Dataset.save_to_disk`` writes (``datasets.load_from_disk(PATH)``), the same
rows as ``data/train-00000-of-00001.parquet`` (``load_dataset("parquet", ...)``, pandas, DuckDB, and
the Hub, whose viewer reads the card's YAML config) and a README.md dataset card. It is built in a
hidden folder beside PATH and renamed into place at the end, so an interrupted export leaves no half
dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from convogen_tui.core.judging.card import dataset_card
from convogen_tui.core.judging.export import (
    ExportReport,
    Item,
    Selection,
    check_output,
    dialog_messages,
    judge_fields,
    samplings,
    selected,
)
from convogen_tui.core.judging.stats import experiment_stats
from convogen_tui.core.keeping.files import atomic_write_text
from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.core.making.experiment import Experiment

PARQUET = "data/train-00000-of-00001.parquet"
ROLES = {"human": "user", "gpt": "assistant"}


def hf_row(item: Item) -> dict[str, Any]:
    record, row, twin = item.record, item.row, item.twin
    turns = dialog_messages(record.conv, record.tweet)
    messages = (
        [] if isinstance(turns, str) else [{"role": ROLES[who], "content": text} for who, text in turns]
    )
    return {
        "id": row.id,
        "tweet_id": record.tweet_id,
        "tweet": record.tweet,
        "motivation": record.motivation_name,
        "disposition": record.disposition_name,
        "motivation_text": record.motivation,
        "disposition_text": record.disposition,
        "conv": record.conv,
        "restyled_conv": twin.restyled_conv if twin else None,
        "messages": messages,
        "turns": row.turns,
        "flags": list(row.flags),
        "mark": row.mark,
        "near_duplicate_of": row.near_duplicate_of or None,
        "model": row.model,
        "fingerprint": row.fingerprint,
        "created_at": row.created_at,
        "version": item.version,
        "provenance": json.dumps(record.provenance.to_json()) if record.provenance else None,
        "restyled_provenance": json.dumps(twin.provenance.to_json()) if twin and twin.provenance else None,
        "judge": json.dumps(judge_fields(item.judgment)) if item.judgment else None,  # scores, rationale
    }


def _features():  # type: ignore[no-untyped-def]
    from datasets import Features, Sequence, Value

    text = Value("string")
    return Features(
        {
            "id": text,
            "tweet_id": text,
            "tweet": text,
            "motivation": text,
            "disposition": text,
            "motivation_text": text,
            "disposition_text": text,
            "conv": text,
            "restyled_conv": text,
            "messages": [{"role": text, "content": text}],
            "turns": Value("int32"),
            "flags": Sequence(text),
            "mark": text,
            "near_duplicate_of": text,
            "model": text,
            "fingerprint": text,
            "created_at": Value("float64"),
            "version": text,
            "provenance": text,
            "restyled_provenance": text,
            "judge": text,
        }
    )


def export_hf(
    experiment: Experiment,
    path: Path,
    selection: Selection | None = None,
    force: bool = False,
    store: ConversationStore | None = None,
) -> ExportReport:
    """Save the selected conversations as a dataset folder at ``path`` (see the module's docstring)."""
    from datasets import Dataset, disable_progress_bars

    path = Path(path)
    check_output(path, force)
    selection = selection or Selection()
    store = store or ConversationStore(experiment.dir)
    items, excluded, total = selected(store, selection)
    report = ExportReport(path, "hf", written=len(items), excluded=excluded, total=total)
    for item in items:
        turns = dialog_messages(item.record.conv, item.record.tweet)
        if isinstance(turns, str):
            report.skipped[turns] += 1  # kept as a row, without messages
    disable_progress_bars()
    dataset = Dataset.from_list([hf_row(item) for item in items], features=_features())
    stats = experiment_stats(experiment, store, [item.row for item in items])
    what = selection.describe()
    card = dataset_card(experiment.name, stats, samplings(items), what, len(items), dict(report.skipped))
    building = path.parent / f".{path.name}.building-{uuid.uuid4().hex[:8]}"
    try:
        dataset.save_to_disk(str(building))
        (building / "data").mkdir()
        dataset.to_parquet(str(building / PARQUET))
        atomic_write_text(building / "README.md", card)
        _replace(building, path)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return report


def _replace(built: Path, path: Path) -> None:
    """Move the finished folder into place; an old one (with --force) goes only once the new is in."""
    old = None
    if path.exists():
        old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(path, old)
    os.replace(built, path)
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
