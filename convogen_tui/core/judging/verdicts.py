"""Quality verdicts for the files of one experiment folder: its thresholds, and one file's verdicts.

The thresholds come from the ``quality`` block of expt-setup.json with the templates' own numbers
as defaults (:meth:`QualitySettings.resolve`). A conversation is judged by the numbers of the
templates that made it (kept by core.keeping.versions), so editing "exactly 6 turns" to 4 does not
make the old conversations short. A setup that cannot be read gives the defaults here:
``convogen check`` and the Setup pane report its problems, listing must still work.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from convogen_tui.core.judging.dialog import Dialog, parse_dialog
from convogen_tui.core.judging.quality import QualitySettings, ResolvedQuality, Verdict, check_dialog
from convogen_tui.core.keeping.records import ConversationRecord, RestyledRecord
from convogen_tui.core.keeping.versions import VersionBook, text_sha
from convogen_tui.core.making.experiment import CONV_TEMPLATE, RESTYLE_TEMPLATE, SETUP_FILE


def quality_block(expt_dir: Path) -> QualitySettings:
    """The setup's ``quality`` block (defaults when the setup cannot be read)."""
    try:
        data = json.loads((Path(expt_dir) / SETUP_FILE).read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("quality"), dict):
            return QualitySettings.model_validate(data["quality"])
    except (OSError, ValueError, ValidationError):
        pass
    return QualitySettings()


def quality_settings(expt_dir: Path) -> ResolvedQuality:
    """The thresholds in force for an experiment folder's current templates."""
    expt_dir = Path(expt_dir)
    block = quality_block(expt_dir)
    return block.resolve(_read(expt_dir / CONV_TEMPLATE), _read(expt_dir / RESTYLE_TEMPLATE))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return ""


class QualityByVersion:
    """Thresholds per conversation: the setup's block with the numbers of the templates that made it.

    A template is found by the sha256 its pass recorded: kept texts first, then the file on disk if
    it is the same text; a text that is not known falls back to the current template.
    """

    def __init__(self, expt_dir: Path) -> None:
        expt_dir = Path(expt_dir)
        self.block = quality_block(expt_dir)
        self.book = VersionBook(expt_dir)
        self.conv_text = _read(expt_dir / CONV_TEMPLATE)
        self.restyle_text = _read(expt_dir / RESTYLE_TEMPLATE)
        self.current = self.block.resolve(self.conv_text, self.restyle_text)
        self._cache: dict[tuple[str, str], ResolvedQuality] = {}

    def text(self, sha: str, current: str) -> str:
        """The template text of a recorded sha256 (the current one when it is not known)."""
        if not sha or sha == text_sha(current):
            return current
        kept = self.book.text(sha)
        return current if kept is None else kept

    def for_shas(self, conv_sha: str, restyle_sha: str = "") -> ResolvedQuality:
        key = (conv_sha, restyle_sha)
        if key not in self._cache:
            conv = self.text(conv_sha, self.conv_text)
            restyle = self.text(restyle_sha, self.restyle_text)
            same = conv == self.conv_text and restyle == self.restyle_text
            self._cache[key] = self.current if same else self.block.resolve(conv, restyle)
        return self._cache[key]

    def for_pair(self, record: ConversationRecord, twin: RestyledRecord | None) -> ResolvedQuality:
        conv_sha = record.provenance.template.sha256 if record.provenance else ""
        restyle_sha = twin.provenance.template.sha256 if twin is not None and twin.provenance else ""
        return self.for_shas(conv_sha, restyle_sha)


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
