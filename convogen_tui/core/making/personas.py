"""The persona grid (motivation x disposition) and how personas are drawn for seeds."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Literal

from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.making.experiment import Persona

PersonaMode = Literal["random", "all"]


def filter_personas(
    personas: Sequence[Persona],
    motivations: Sequence[str] | None = None,
    dispositions: Sequence[str] | None = None,
) -> list[Persona]:
    """Keep personas whose names are listed; an unknown name is an error naming the choices."""
    for wanted, attr, kind in (
        (motivations, "motivation", "motivation"),
        (dispositions, "disposition", "disposition"),
    ):
        if wanted:
            known = {getattr(p, attr) for p in personas}
            unknown = [w for w in wanted if w not in known]
            if unknown:
                raise ConvogenError(
                    Problem(
                        None,
                        f"unknown {kind} {', '.join(unknown)}",
                        hint=f"known: {', '.join(sorted(known)) or 'none'}",
                    )
                )
    return [
        p
        for p in personas
        if (not motivations or p.motivation in motivations)
        and (not dispositions or p.disposition in dispositions)
    ]


def draw_persona(personas: Sequence[Persona], tweet_id: str, draw_seed: int = 0) -> Persona:
    """One persona for a seed, stable for the same (draw seed, tweet id) whatever the order or limit.

    Stability is what lets an interrupted random run resume with the same personas.
    """
    if not personas:
        raise ConvogenError(Problem(None, "no personas to draw from", hint="check the setup's user_profiles"))
    digest = hashlib.sha256(f"{draw_seed}:{tweet_id}".encode()).digest()
    return random.Random(digest).choice(list(personas))


def persona_grid(personas: Sequence[Persona]) -> tuple[list[str], list[str], set[tuple[str, str]]]:
    """Rows (motivations), columns (dispositions) and the pairs present, for showing as a grid."""
    motivations = list(dict.fromkeys(p.motivation for p in personas))
    dispositions = list(dict.fromkeys(p.disposition for p in personas))
    return motivations, dispositions, {(p.motivation, p.disposition) for p in personas}
