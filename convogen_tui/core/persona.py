"""The persona's name, a word every part of ConvoGen shares: a motivation crossed with a disposition.

Its ``label`` ("distrust x sarcastic") is spelled here only; the store, coverage, the planner and the
screens all read it from a ``PersonaName`` (or a ``Persona``, which adds the texts).
"""

from __future__ import annotations

from dataclasses import dataclass

SEPARATOR = " x "


@dataclass(frozen=True)
class PersonaName:
    """A (motivation, disposition) pair by name, without its texts."""

    motivation: str
    disposition: str

    @property
    def label(self) -> str:
        return f"{self.motivation}{SEPARATOR}{self.disposition}"

    @property
    def name(self) -> PersonaName:
        """The names alone (for a ``Persona``: without its texts), usable as a key."""
        return PersonaName(self.motivation, self.disposition)


def persona_label(motivation: str, disposition: str) -> str:
    """The label of a persona known by its two names."""
    return PersonaName(motivation, disposition).label
