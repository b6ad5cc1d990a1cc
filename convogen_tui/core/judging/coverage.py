"""Coverage of the seed x persona grid, and the jobs that fill its missing cells.

A cell is one (seed, persona). It is *done* when it holds a conversation without quality flags (or
one a reviewer kept), *flagged* when all it holds is flagged, *deleted* when its only conversations
are in the trash, and *missing* otherwise. ``convogen generate --fill`` runs the missing cells,
always taking the next one from the persona with the fewest conversations, so a limited or
interrupted fill leaves the personas balanced (``fill_cells``; the planner makes them jobs).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.keeping.records import read_conversation
from convogen_tui.core.keeping.store import ConversationStore, ConversationSummary
from convogen_tui.core.making.experiment import CONVERSATIONS, Persona
from convogen_tui.core.making.seeds import Seed
from convogen_tui.core.persona import persona_label

CellState = Literal["done", "flagged", "deleted", "missing"]
STATES: tuple[CellState, ...] = ("done", "flagged", "deleted", "missing")
Key = tuple[str, str, str]  # (tweet id, motivation, disposition)


def is_usable(row: ConversationSummary) -> bool:
    """Kept by a reviewer, or neither marked flagged nor flagged by a rule."""
    return row.mark == "kept" or (row.mark != "flagged" and not row.flags)


@dataclass
class Coverage:
    """The grid's cells by state, in seed order then persona order."""

    seeds: list[Seed]
    personas: list[Persona]
    states: dict[Key, CellState] = field(default_factory=dict)
    conversations: dict[Key, int] = field(default_factory=dict)  # conversations present per cell
    outside: int = 0  # conversations whose seed or persona is not in the grid

    def state(self, seed: Seed, persona: Persona) -> CellState:
        return self.states[(seed.tweet_id, persona.motivation, persona.disposition)]

    def counts(self) -> dict[str, int]:
        out = {"cells": len(self.states), **dict.fromkeys(STATES, 0)}
        for state in self.states.values():
            out[state] += 1
        return out

    def by_persona(self) -> dict[str, dict[str, int]]:
        out = {p.label: dict.fromkeys(STATES, 0) for p in self.personas}
        for (_, motivation, disposition), state in self.states.items():
            out[persona_label(motivation, disposition)][state] += 1
        return out

    def missing(self) -> list[tuple[Seed, Persona]]:
        return [(s, p) for s in self.seeds for p in self.personas if self.state(s, p) == "missing"]

    def as_dict(self) -> dict[str, object]:
        counts = self.counts()
        cells = counts["cells"]
        return {
            **counts,
            "outside": self.outside,
            "seeds": len(self.seeds),
            "personas": len(self.personas),
            "done_rate": round(counts["done"] / cells, 4) if cells else 0.0,
            "by_persona": self.by_persona(),
        }


def trashed_keys(store: ConversationStore) -> set[Key]:
    """(seed, persona) of every conversation waiting in the trash."""
    keys: set[Key] = set()
    for batch in store.trash_batches():
        for path in sorted((store.trash_dir / batch / CONVERSATIONS).glob("*.json")):
            try:
                record = read_conversation(path)
            except ConvogenError:
                continue
            keys.add((record.tweet_id, record.motivation_name, record.disposition_name))
    return keys


def coverage_of(
    seeds: Sequence[Seed],
    personas: Sequence[Persona],
    rows: Sequence[ConversationSummary],
    trashed: set[Key] | None = None,
) -> Coverage:
    """Each cell's state from the listing (and the trash)."""
    trashed = trashed or set()
    result = Coverage(list(seeds), list(personas))
    present: dict[Key, list[ConversationSummary]] = {}
    for row in rows:
        present.setdefault(row.key, []).append(row)
    grid: set[Key] = set()
    for seed in seeds:
        for persona in personas:
            key = (seed.tweet_id, persona.motivation, persona.disposition)
            grid.add(key)
            held = present.get(key, [])
            result.conversations[key] = len(held)
            if any(is_usable(row) for row in held):
                result.states[key] = "done"
            elif held:
                result.states[key] = "flagged"
            elif key in trashed:
                result.states[key] = "deleted"
            else:
                result.states[key] = "missing"
    result.outside = sum(len(held) for key, held in present.items() if key not in grid)
    return result


def fill_cells(coverage: Coverage, limit: int | None = None) -> list[tuple[Seed, Persona]]:
    """The missing cells, balanced: each next cell goes to the persona with the fewest
    conversations so far (ties in setup order), taking that persona's seeds in file order.

    The planner (``core.making.planner``, ``fill``) makes them jobs.
    """
    queues: dict[str, list[Seed]] = {p.label: [] for p in coverage.personas}
    for s, p in coverage.missing():
        queues[p.label].append(s)
    held = {p.label: 0 for p in coverage.personas}
    for (_, motivation, disposition), count in coverage.conversations.items():
        held[persona_label(motivation, disposition)] += min(count, 1)
    heap = [(held[p.label], i, p) for i, p in enumerate(coverage.personas) if queues[p.label]]
    heapq.heapify(heap)
    cells: list[tuple[Seed, Persona]] = []
    while heap and (limit is None or len(cells) < limit):
        count, order, persona = heapq.heappop(heap)
        cells.append((queues[persona.label].pop(0), persona))
        if queues[persona.label]:
            heapq.heappush(heap, (count + 1, order, persona))
    return cells
