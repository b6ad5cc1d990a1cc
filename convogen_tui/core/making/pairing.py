"""Paired reruns: the seed x persona cells another version made, with the random seed of each.

`generate --pair-with v2` reruns, with the current texts, exactly the cells v2 made, each with
the random seed its v2 conversation recorded (``provenance.random_seed``), so the texts are the only
difference between the two conversations of a cell. `--refresh-stale` does the same for the
conversations of every version but the current one. New conversations are added; nothing is
replaced. The cells go to the planner as named cells (it builds the jobs).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.keeping.store import ConversationStore, ConversationSummary
from convogen_tui.core.making.experiment import Experiment, Persona
from convogen_tui.core.making.planner import Cell
from convogen_tui.core.making.seeds import Seed


@dataclass(frozen=True)
class PairedCell:
    """A cell to run again: its seed, its persona (current texts when still in the setup), and the
    random seed of the conversation it pairs with (None when that one recorded none)."""

    seed: Seed
    persona: Persona
    random_seed: int | None
    pairs_with: str  # the conversation id

    @property
    def cell(self) -> Cell:
        """The planner's named cell (it builds the job)."""
        return Cell(self.seed, self.persona, self.random_seed)


def cells_to_pair(
    experiment: Experiment,
    store: ConversationStore,
    rows: Iterable[ConversationSummary],
    limit: int | None = None,
    seeds: Collection[str] | None = None,
    made_by: str | None = None,
) -> tuple[list[PairedCell], list[Problem]]:
    """The cells of ``rows`` (oldest first, one per cell) that ``made_by`` has not made yet.

    ``seeds`` keeps only these tweet ids; ``made_by`` (a version id, usually the current texts')
    skips cells that version already made, so running the same command again resumes instead of
    making each cell twice. Unreadable conversations are returned as problems, never skipped silently.
    """
    rows = list(rows)
    done = {r.key for r in store.list() if made_by is not None and r.version == made_by}
    current = {p.label: p for p in experiment.personas()}
    cells: list[PairedCell] = []
    problems: list[Problem] = []
    seen: set[tuple[str, str, str]] = set()
    for row in sorted(rows, key=lambda r: (r.created_at, r.id)):
        if row.key in seen or row.key in done or (seeds is not None and row.tweet_id not in seeds):
            continue
        seen.add(row.key)
        if limit is not None and len(cells) >= limit:
            break
        try:
            record, _ = store.load(row.id)
        except ConvogenError as exc:
            problems.extend(exc.problems[:1] or [Problem(store.conversation_path(row.id), str(exc))])
            continue
        persona = current.get(
            f"{row.motivation} x {row.disposition}",
            Persona(row.motivation, row.disposition, record.motivation, record.disposition),
        )
        random_seed = record.provenance.random_seed if record.provenance else None
        cells.append(PairedCell(Seed(record.tweet_id, record.tweet), persona, random_seed, row.id))
    return cells, problems
