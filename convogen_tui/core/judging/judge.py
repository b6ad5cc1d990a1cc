"""The judge pass: a model scores each pair on the experiment's criteria, always as parseable JSON.

The answer is one JSON object, every criterion an integer on the scale plus a short
``rationale``. Backends that can enforce it get a :class:`Constraint` (a GBNF grammar for
llama.cpp and llama-server, its JSON schema for servers with structured outputs); for the others
the answer is validated here and the pipeline asks once more. An answer that still fails is kept
as a ``judge-failed`` judgment with the reason: a run never crashes on it and the conversation
stays listed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.judging.criteria import JudgeSettings
from convogen_tui.core.keeping.records import JudgmentRecord
from convogen_tui.core.making.backend import Constraint
from convogen_tui.core.making.experiment import Experiment, SamplingSettings
from convogen_tui.core.making.templates import Template, load_template

JUDGE_SYSTEM = (
    "You are a careful annotator of conversations for a research project on online misinformation. "
    "You score honestly and answer with one JSON object only."
)
FAILED = "judge-failed"
RETRY_NOTE = (
    "\n\nYour previous answer could not be used ({reason}). Answer again with only the JSON object: "
    "every criterion a whole number from {low} to {high}, and a short rationale."
)


@dataclass(frozen=True)
class JudgeAnswer:
    """A valid answer: a score per criterion, in range, and the judge's short reason."""

    scores: dict[str, int]
    rationale: str


class AnswerError(ValueError):
    """An answer that is not the JSON object asked for; the message says what is wrong."""


# the shape of the answer -----------------------------------------------------------------
def answer_schema(settings: JudgeSettings) -> dict[str, Any]:
    """The JSON schema of an answer (for servers with structured outputs, and for the record)."""
    low, high = settings.scale
    properties: dict[str, Any] = {
        name: {"type": "integer", "minimum": low, "maximum": high} for name in settings.names
    }
    properties["rationale"] = {"type": "string", "maxLength": settings.rationale_chars}
    return {
        "type": "object",
        "properties": properties,
        "required": [*settings.names, "rationale"],
        "additionalProperties": False,
    }


def _score_rule(low: int, high: int) -> str:
    if high <= 9:
        return f"[{low}-{high}]"
    return " | ".join(f'"{n}"' for n in range(high, low - 1, -1))  # longer numbers first


def answer_grammar(settings: JudgeSettings) -> str:
    """A GBNF grammar (root rule ``root``) for exactly the schema's objects, keys in order.

    Whitespace is at most one space and the rationale has a length cap, so even a small model
    cannot run on forever inside the grammar.
    """
    fields = [f'"\\"{name}\\"" ws ":" ws score' for name in settings.names]
    fields.append('"\\"rationale\\"" ws ":" ws rationale')
    body = ' ws "," ws '.join(fields)
    return "\n".join(
        [
            f'root ::= "{{" ws {body} ws "}}"',
            f"score ::= {_score_rule(*settings.scale)}",
            f'rationale ::= "\\"" char{{0,{settings.rationale_chars}}} "\\""',
            'char ::= [^"\\\\\\x00-\\x1F\\x7F] | "\\\\" ["\\\\/bfnrt]',
            'ws ::= " "?',
        ]
    )


def answer_constraint(settings: JudgeSettings) -> Constraint:
    return Constraint("judge", answer_grammar(settings), answer_schema(settings))


def parse_answer(text: str, settings: JudgeSettings) -> JudgeAnswer:
    """The answer in ``text`` (prose or a code fence around the object is tolerated).

    Raises :class:`AnswerError` saying what is wrong: empty, no object, bad JSON, a criterion
    missing, not a whole number, out of range, or no rationale. A rationale past the cap is cut.
    """
    stripped = text.strip()
    if not stripped:
        raise AnswerError("empty answer")
    start = stripped.find("{")
    if start == -1:
        raise AnswerError("no JSON object in the answer")
    try:
        data, _ = json.JSONDecoder().raw_decode(stripped[start:])
    except json.JSONDecodeError as exc:
        raise AnswerError(f"not valid JSON ({exc.msg} at character {exc.pos + start + 1})") from None
    if not isinstance(data, dict):
        raise AnswerError("the answer is not a JSON object")
    low, high = settings.scale
    scores: dict[str, int] = {}
    for name in settings.names:
        if name not in data:
            raise AnswerError(f"no score for '{name}'")
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise AnswerError(f"'{name}' is {json.dumps(value)[:20]}, not a whole number")
        if not low <= value <= high:
            raise AnswerError(f"'{name}' is {value}, outside {low}-{high}")
        scores[name] = value
    rationale = data.get("rationale")
    if not isinstance(rationale, str):
        raise AnswerError("no 'rationale' text")
    return JudgeAnswer(scores, rationale.strip()[: settings.rationale_chars])


# the prompt --------------------------------------------------------------------------------
def criteria_text(settings: JudgeSettings) -> str:
    return "\n".join(f"- {name}: {description}" for name, description in settings.criteria.items())


def scale_text(settings: JudgeSettings) -> str:
    low, high = settings.scale
    return f"{low} (worst) to {high} (best)"


@dataclass(frozen=True)
class PairText:
    """What the judge reads of one pair: the seed, the persona texts, both versions of the dialog."""

    tweet: str
    motivation: str
    disposition: str
    conv: str
    restyled: str


@dataclass(frozen=True)
class JudgePass:
    """An experiment's judge, ready to prompt: settings, template, constraint and sampling."""

    settings: JudgeSettings
    template: Template

    @property
    def constraint(self) -> Constraint:
        return answer_constraint(self.settings)

    @property
    def max_tokens(self) -> int:
        """Room for the whole answer: keys, scores, the longest rationale (a token a character)."""
        return 32 + 12 * len(self.settings.criteria) + self.settings.rationale_chars

    def sampling(self, base: SamplingSettings) -> SamplingSettings:
        """The run's sampling with the judge's temperature, no repeat penalty (JSON repeats itself)."""
        values = {**base.model_dump(), "temperature": self.settings.temperature, "repeat_penalty": 1.0}
        return SamplingSettings.model_validate({**values, "max_tokens": self.max_tokens})

    def instruction(self, pair: PairText, retry_reason: str | None = None) -> str:
        text = self.template.render(
            tweet=pair.tweet,
            motivation=pair.motivation,
            disposition=pair.disposition,
            conv=pair.conv,
            restyled=pair.restyled,
            criteria=criteria_text(self.settings),
            scale=scale_text(self.settings),
        )
        if retry_reason is not None:
            low, high = self.settings.scale
            text += RETRY_NOTE.format(reason=retry_reason, low=low, high=high)
        return text

    def is_current(self, template_sha256: str, criteria_sha256: str) -> bool:
        """Whether a judgment made with this template and these criteria is still up to date."""
        return template_sha256 == self.template.sha256 and criteria_sha256 == self.settings.sha256


def judge_settings(experiment: Experiment) -> JudgeSettings:
    """The experiment's ``judge`` block; a clear error when there is none."""
    if experiment.setup is None or experiment.setup.judge is None:
        raise ConvogenError(
            Problem(
                experiment.setup_file,
                "no judge criteria",
                key="judge",
                hint='add a "judge": {"criteria": {"NAME": "one-line description", ...}} block '
                "and a judge.txt template (see datasets/inst-templates/sample)",
            )
        )
    return experiment.setup.judge


def load_judge(experiment: Experiment, template_path: Path | None = None) -> JudgePass:
    """The judge of an experiment: its criteria and its checked ``judge.txt``."""
    settings = judge_settings(experiment)
    template = load_template(template_path or experiment.judge_template_path, "judge")
    return JudgePass(settings, template)


def current_keys(experiment: Experiment) -> tuple[str, str] | None:
    """(judge.txt sha256, criteria sha256) in force now: a judgment made under others is stale.

    None when the experiment has no judge block or its judge.txt cannot be read.
    """
    if experiment.setup is None or experiment.setup.judge is None:
        return None
    try:
        text = experiment.judge_template_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    return hashlib.sha256(text.encode("utf-8")).hexdigest(), experiment.setup.judge.sha256


def is_stale(judgment: JudgmentRecord, keys: tuple[str, str] | None) -> bool:
    """Made with another judge.txt or other criteria than ``keys`` (:func:`current_keys`)."""
    if keys is None:
        return False
    provenance = judgment.provenance
    return provenance is None or (provenance.template.sha256, provenance.criteria_sha256) != keys
