"""The ``judge`` block of expt-setup.json: the criteria a judge model scores, and the scale.

Kept apart from the judge pass itself (``judge.py``) so the setup model can hold it without
importing the pass: criteria are data, the pass reads them.
"""

from __future__ import annotations

import hashlib
import json
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

CRITERION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
RESERVED = {"rationale"}  # the answer's own key


class JudgeSettings(BaseModel):
    """What the judge scores and how: ``criteria`` (name -> one-line description), ``scale``.

    ``model`` names another model for the judge (default: the generator's); ``temperature`` is the
    judge's own (default 0: the same answer for the same pair).
    """

    model_config = ConfigDict(extra="forbid")

    criteria: dict[str, str] = Field(min_length=1, max_length=20)
    scale: tuple[int, int] = (1, 5)
    model: str | None = None
    temperature: float = Field(0.0, ge=0, le=2)
    rationale_chars: int = Field(280, ge=20, le=2000)  # the rationale's length cap

    @field_validator("criteria")
    @classmethod
    def _names_and_lines(cls, criteria: dict[str, str]) -> dict[str, str]:
        for name, description in criteria.items():
            if not CRITERION_NAME.match(name) or name in RESERVED:
                raise ValueError(
                    f"criterion name '{name}' must be lower-case letters, digits and _ "
                    "(at most 40, starting with a letter, not 'rationale')"
                )
            if not description.strip() or "\n" in description.strip():
                raise ValueError(f"criterion '{name}' needs a one-line description")
        return {name: description.strip() for name, description in criteria.items()}

    @field_validator("scale")
    @classmethod
    def _scale_order(cls, scale: tuple[int, int]) -> tuple[int, int]:
        low, high = scale
        if low < 0 or high <= low or high - low > 20:
            raise ValueError(f"scale [{low}, {high}] must be two whole numbers, 0 <= low < high <= low + 20")
        return scale

    @property
    def names(self) -> list[str]:
        return list(self.criteria)

    @property
    def sha256(self) -> str:
        """The criteria and scale as judged: a judgment made under another one is stale."""
        data = {"criteria": self.criteria, "scale": list(self.scale)}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def in_range(self, score: object) -> bool:
        low, high = self.scale
        return isinstance(score, int) and not isinstance(score, bool) and low <= score <= high
