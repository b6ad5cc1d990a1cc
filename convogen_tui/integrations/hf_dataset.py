"""``convogen export --format hf``: a Hugging Face ``datasets`` dataset with Parquet and a card.

The folder holds what ``Dataset.save_to_disk`` writes (``datasets.load_from_disk(PATH)``), the same
rows as ``data/train-00000-of-00001.parquet`` (``load_dataset("parquet", ...)``, pandas, DuckDB, and
the Hub, whose viewer reads the card's YAML config) and a README.md dataset card. Rows are read and
written in batches of BATCH (an Arrow stream and the Parquet file side by side), so memory does not
grow with the experiment; ``save_to_disk`` then copies the memory-mapped Arrow file. It is built in
a hidden folder beside PATH and renamed into place at the end, so an interrupted export leaves no
half dataset.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.judging.card import dataset_card
from convogen_tui.core.judging.dialog import dialog_words
from convogen_tui.core.judging.diversity import DiversitySketch
from convogen_tui.core.judging.export import (
    ExportReport,
    Item,
    Progress,
    Selection,
    check_output,
    chosen_rows,
    dialog_messages,
    judge_fields,
    nothing_written,
    read_items,
)
from convogen_tui.core.judging.stats import experiment_stats, index_diversity
from convogen_tui.core.keeping.files import atomic_write_text
from convogen_tui.core.keeping.redact import redact, redactor
from convogen_tui.core.keeping.store import ConversationStore, ConversationSummary
from convogen_tui.core.making.experiment import Experiment

PARQUET = "data/train-00000-of-00001.parquet"
ROLES = {"human": "user", "gpt": "assistant"}
BATCH = 1000


def hf_row(item: Item) -> dict[str, Any]:
    """One dataset row; ``messages`` is empty and ``parsed`` false when the turns cannot be told apart."""
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
        "parsed": not isinstance(turns, str),
        "unparsed": turns if isinstance(turns, str) else None,
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


@dataclasses.dataclass
class _Tally:
    """What the card needs from the rows written, gathered while they stream past."""

    rows: list[ConversationSummary] = dataclasses.field(default_factory=list)
    diversity: DiversitySketch | None = None  # None: every conversation goes out, the index knows
    samplings: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def add(self, item: Item) -> None:
        self.rows.append(item.row)
        if self.diversity is not None:
            self.diversity.add(dialog_words(item.record.conv), item.row.mtld)
        sampling = item.record.provenance.sampling if item.record.provenance else {}
        if sampling and sampling not in self.samplings:
            self.samplings.append(sampling)


def _rows(items: Iterable[Item], report: ExportReport, tally: _Tally) -> Iterator[dict[str, Any]]:
    for item in items:
        row = hf_row(item)
        if row["unparsed"]:
            report.unparsed[row["unparsed"]] += 1
        tally.add(item)
        report.written += 1
        yield row


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
            "parsed": Value("bool"),
            "unparsed": text,
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
    allow_empty: bool = False,
    progress: Progress | None = None,
) -> ExportReport:
    """Save the selected conversations as a dataset folder at ``path`` (see the module's docstring)."""
    from datasets import Dataset, disable_progress_bars

    path = Path(path)
    check_output(path, force)
    selection = selection or Selection()
    store = store or ConversationStore(experiment.dir)
    report = ExportReport(path, "hf")
    chosen = chosen_rows(store, selection, report)
    tally = _Tally(diversity=DiversitySketch() if report.excluded else None)
    disable_progress_bars()
    building = path.parent / f".{path.name}.building-{uuid.uuid4().hex[:8]}"
    arrow = path.parent / f".{path.name}.rows-{uuid.uuid4().hex[:8]}.arrow"
    try:
        (building / "data").mkdir(parents=True)
        rows = _rows(read_items(store, chosen, report, progress), report, tally)
        _write_batches(rows, arrow, building / PARQUET)
        if not report.written and not allow_empty:
            raise nothing_written(report, selection)
        dataset = Dataset.from_file(str(arrow))
        dataset.save_to_disk(str(building / "arrow"))
        for part in (building / "arrow").iterdir():
            os.replace(part, building / part.name)
        (building / "arrow").rmdir()
        del dataset
        diversity = tally.diversity or index_diversity(store, tally.rows)
        stats = experiment_stats(experiment, store, tally.rows, diversity)
        card = dataset_card(experiment.name, stats, tally.samplings, selection.describe(), report)
        atomic_write_text(building / "README.md", card)
        _replace(building, path)
    finally:
        shutil.rmtree(building, ignore_errors=True)
        arrow.unlink(missing_ok=True)
    return report


def _write_batches(rows: Iterator[dict[str, Any]], arrow: Path, parquet: Path) -> None:
    """Rows, BATCH at a time, into an Arrow stream file and a Parquet file (both with the features'
    schema, so ``datasets`` reads the types back)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _features().arrow_schema
    with (
        pa.OSFile(str(arrow), "wb") as sink,
        pa.ipc.new_stream(sink, schema) as stream,
        pq.ParquetWriter(str(parquet), schema) as table_writer,
    ):
        batch: list[dict[str, Any]] = []
        clean = redactor()
        for row in rows:
            batch.append(_redacted(row, clean))
            if len(batch) == BATCH:
                _flush(batch, schema, (stream, table_writer))
        _flush(batch, schema, (stream, table_writer), last=True)


def _flush(batch: list[dict[str, Any]], schema: Any, writers: tuple[Any, ...], last: bool = False) -> None:
    """One batch into every writer (the last call also writes an empty table, for the schema)."""
    import pyarrow as pa

    if batch or last:
        table = pa.Table.from_pylist(batch, schema=schema)
        for writer in writers:
            writer.write_table(table)
    batch.clear()


def _redacted(value: Any, clean: Callable[[str], str]) -> Any:
    """Every text (messages too) through the one redaction step, as every file ConvoGen writes."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {k: _redacted(v, clean) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v, clean) for v in value]
    return value


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


PUSHED = ["README.md", "data/*"]  # the card and the Parquet files: what the Hub's viewer reads


def push_to_hub(folder: Path, repo_id: str, private: bool = False) -> str:
    """Upload an exported dataset's card and Parquet files to the Hub as dataset ``repo_id``
    (created if missing, ``private`` if asked); returns the commit's URL. The token comes from
    ``HF_TOKEN`` and the hub from ``HF_ENDPOINT`` (a mirror, or a test's loopback fake)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ConvogenError(Problem(None, f"'{repo_id}' is not a Hub repository", hint="write OWNER/NAME"))
    token = os.environ.get("HF_TOKEN") or None
    if token is None:
        raise ConvogenError(
            Problem(None, "pushing to the Hub needs a token", hint="export HF_TOKEN=... (a write token)")
        )
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=str(folder),
            allow_patterns=PUSHED,
            commit_message=f"ConvoGen export ({folder.name})",
        )
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        hint = "check HF_TOKEN: it must be a write token for OWNER" if status in (401, 403) else None
        raise ConvogenError(Problem(None, redact(f"the Hub refused the upload: {exc}"), hint=hint)) from None
    except OSError as exc:
        raise ConvogenError(Problem(None, redact(f"cannot reach the Hub: {exc}"))) from None
    return str(info.commit_url)
