"""Quality verdicts for the files of one experiment folder: its thresholds, and one file's verdicts.

The thresholds come from the ``quality`` block of expt-setup.json with the templates' own numbers
as defaults (:meth:`QualitySettings.resolve`). A setup that cannot be read gives the defaults here:
``convogen check`` and the Setup pane report its problems, listing must still work.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from convogen_tui.core.judging.dialog import Dialog, parse_dialog
from convogen_tui.core.judging.quality import QualitySettings, ResolvedQuality, Verdict, check_dialog
from convogen_tui.core.keeping.records import ConversationRecord, RestyledRecord
from convogen_tui.core.making.experiment import CONV_TEMPLATE, RESTYLE_TEMPLATE, SETUP_FILE


def quality_settings(expt_dir: Path) -> ResolvedQuality:
    """The thresholds in force for an experiment folder."""
    expt_dir = Path(expt_dir)
    settings = QualitySettings()
    try:
        data = json.loads((expt_dir / SETUP_FILE).read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("quality"), dict):
            settings = QualitySettings.model_validate(data["quality"])
    except (OSError, ValueError, ValidationError):
        pass
    return settings.resolve(_read(expt_dir / CONV_TEMPLATE), _read(expt_dir / RESTYLE_TEMPLATE))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def judge(
    record: ConversationRecord,
    twin: RestyledRecord | None,
    settings: ResolvedQuality,
    dialog: Dialog | None = None,
) -> list[Verdict]:
    """Every per-file rule that fires for a stored conversation and its twin (``dialog``: the
    conversation already parsed, to read it once)."""
    twin_reason = twin.provenance.finish_reason if twin is not None and twin.provenance else None
    return check_dialog(
        dialog or parse_dialog(record.conv),
        twin.restyled_conv if twin is not None else None,
        settings,
        finish_reason=record.finish_reason,
        twin_finish_reason=twin_reason,
    )
