"""Typed records of the saved files: a conversation, its restyled twin, and their provenance.

The files keep the original notebooks' flat keys (``tweet_id``, ``disposition``, ``motivation``,
``tweet``, ``conv``; ``restyled_conv`` in the twin) exactly as users read them with
``json.load``; what ConvoGen adds (``persona``, ``provenance``, ``review``) sits beside them. Every
model allows extra keys, so a file written by the notebooks, by an older ConvoGen or by a user's
script reads back and is written again without losing anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from convogen_tui.core.errors import ConvogenError, Problem

SCHEMA_VERSION = 1  # provenance.schema_version of files this version writes; absent means older

Mark = Literal["", "flagged", "kept"]
Phase = Literal["generate", "restyle", "judge"]


class _Record(BaseModel):
    """Extra keys are kept; numbers where text belongs (old tweet ids) are read as text."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    def to_json(self) -> dict[str, Any]:
        """The file's contents: fields that were read or set, extras included, in a stable order."""
        return self.model_dump(mode="json", exclude_unset=True)


_RecordT = TypeVar("_RecordT", bound=_Record)


class ModelProvenance(_Record):
    name: str = ""
    file: str | None = None
    path: str | None = None
    size_bytes: int = 0
    fingerprint: str = ""
    architecture: str = ""
    backend: str = ""
    gpu_layers: int = 0
    n_ctx: int = 0
    endpoint: str | None = None


class TemplateRef(_Record):
    file: str | None = None
    sha256: str = ""


class Provenance(_Record):
    """How a pass was made: model, sampling, template hash, timing. Written once, never edited."""

    schema_version: int = SCHEMA_VERSION
    created_at: float | None = None
    created: str | None = None
    convogen_version: str | None = None
    phase: Phase | None = None
    model: ModelProvenance = Field(default_factory=ModelProvenance)
    sampling: dict[str, Any] = Field(default_factory=dict)
    random_seed: int | None = None
    prompt_format: str | None = None
    system: str | None = None
    cue: str | None = None
    template: TemplateRef = Field(default_factory=TemplateRef)
    version: str | None = None  # the id of the texts it was made with (core.keeping.versions); None: older
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    elapsed_s: float = 0.0
    time_to_first_token_s: float = 0.0
    tokens_per_second: float = 0.0
    # sampled under a grammar of the form (core/making/grammar.py); None in files from before
    constrained: bool | None = None
    grammar_sha256: str | None = None  # sha256 of the GBNF grammar it was sampled under


class PersonaNames(_Record):
    motivation: str = ""
    disposition: str = ""


class Review(_Record):
    mark: Mark = ""
    marked_at: float | None = None
    note: str | None = None


class ConversationRecord(_Record):
    """``conversations/<id>.json``: the seed, the persona texts, the dialog, and ConvoGen's extras."""

    tweet_id: str = ""
    disposition: str = ""
    motivation: str = ""
    tweet: str = ""
    conv: str = ""
    persona: PersonaNames | None = None
    provenance: Provenance | None = None
    review: Review | None = None

    @property
    def mark(self) -> Mark:
        return self.review.mark if self.review else ""

    @property
    def motivation_name(self) -> str:
        """The persona's motivation name; files from the notebooks carry only texts (first words)."""
        return (self.persona.motivation if self.persona else "") or _short(self.motivation)

    @property
    def disposition_name(self) -> str:
        return (self.persona.disposition if self.persona else "") or _short(self.disposition)

    @property
    def finish_reason(self) -> str | None:
        return self.provenance.finish_reason if self.provenance else None


class RestyledRecord(_Record):
    """``restyled-conversations/<id>.json``: the same conversation as a Twitter thread."""

    tweet_id: str = ""
    restyled_conv: str = ""
    provenance: Provenance | None = None


class JudgmentProvenance(_Record):
    """How a judgment was made: the judge model, its template and criteria, sampling, when."""

    schema_version: int = SCHEMA_VERSION
    created_at: float | None = None
    created: str | None = None
    convogen_version: str | None = None
    model: ModelProvenance = Field(default_factory=ModelProvenance)
    template: TemplateRef = Field(default_factory=TemplateRef)
    criteria_sha256: str = ""
    sampling: dict[str, Any] = Field(default_factory=dict)
    random_seed: int | None = None
    constraint: str = ""  # how the answer's shape was enforced: grammar, json_schema, or "" (validated)
    attempts: int = 1
    prompt_tokens: int = 0
    completion_tokens: int = 0
    elapsed_s: float = 0.0


class JudgmentRecord(_Record):
    """``judgments/<id>.json``: the judge's scores of a pair, or ``judge-failed`` with the reason."""

    scores: dict[str, int] = Field(default_factory=dict)
    rationale: str = ""
    verdict: Literal["ok", "judge-failed"] = "ok"
    reason: str | None = None  # why a judge-failed answer could not be used
    answer: str | None = None  # the unusable answer, cut short, for a human to read
    provenance: JudgmentProvenance | None = None

    @property
    def failed(self) -> bool:
        return self.verdict != "ok"

    @property
    def lowest(self) -> int | None:
        return min(self.scores.values()) if self.scores and not self.failed else None


def read_conversation(path: Path) -> ConversationRecord:
    return _read(path, ConversationRecord, "conversation")


def read_restyled(path: Path) -> RestyledRecord:
    return _read(path, RestyledRecord, "restyled conversation")


def read_judgment(path: Path) -> JudgmentRecord:
    return _read(path, JudgmentRecord, "judgment")


def _read(path: Path, model: type[_RecordT], what: str) -> _RecordT:
    """Parse one saved file; a ConvogenError names the file and the field that is wrong."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ConvogenError(Problem(path, f"{what} file not found")) from None
    except OSError as exc:
        raise ConvogenError(Problem(path, f"cannot read the {what} file ({exc.strerror or exc})")) from None
    except UnicodeDecodeError as exc:
        raise ConvogenError(Problem(path, f"not UTF-8 text ({exc.reason})")) from None
    except ValueError as exc:
        raise ConvogenError(
            Problem(path, f"not valid JSON ({exc})", hint="fix the file by hand or delete it")
        ) from None
    if not isinstance(data, dict):
        raise ConvogenError(Problem(path, f"a {what} file holds one JSON object, not {type(data).__name__}"))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"])
        raise ConvogenError(Problem(path, f"{error['msg']}", key=key)) from None


def _short(text: str) -> str:
    """Old files carry only the persona texts: the first words stand in for a name."""
    words = text.split()
    return " ".join(words[:3]) + ("..." if len(words) > 3 else "")
