"""Deciding what to run: one planner for every way of starting work.

The CLI (``generate``, ``--limit``, ``--again``, ``--fill``, ``restyle``), the app (Generate, a seed's
Enter, ctrl+r, Review's regenerate) and notebooks (``Pipeline.plan``) all describe what the user
asked for as a :class:`PlanRequest` and get a :class:`Plan` back from :func:`plan`. Each job has its
cell (seed x persona), its passes (``generate`` then ``restyle``, or ``restyle`` alone) and its
random seed, derived by one recipe (:func:`job_random_seed`), so ``--seed`` runs repeat whatever
asked for them.

A new kind of work is one entry in :data:`PLANNERS` (and its name in ``records.Phase``).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.judging.coverage import Coverage, coverage_of, fill_cells, trashed_keys
from convogen_tui.core.judging.judge import current_keys, is_stale
from convogen_tui.core.keeping.records import Phase
from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.core.making.experiment import Experiment, Persona
from convogen_tui.core.making.personas import draw_persona, filter_personas
from convogen_tui.core.making.seeds import Seed

RANDOM = "random"  # one persona per seed, drawn
ALL = "all"  # every persona for each seed
FOLLOW_UPS: dict[Phase, tuple[Phase, ...]] = {"generate": ("restyle",)}  # passes a kind brings along
JUDGED: tuple[Phase, ...] = ("judge",)  # what a restyle brings along when the request judges


def job_random_seed(base: int | None, *parts: str) -> int:
    """A per-job seed derived from the run's --seed, so each job repeats alone or in any order.

    The one recipe: a cell's job gets ``(base, tweet id, motivation, disposition)``, a restyle-only
    job ``(base, conversation id, "restyle")``, and each later pass of a job ``(job's seed, pass)``.
    """
    if base is None:
        return random.SystemRandom().randrange(2**31)
    digest = hashlib.sha256(":".join([str(base), *parts]).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class Job:
    """One unit of work on a cell: its passes, in order, and the random seed that makes it repeatable.

    ``passes`` defaults to generate-then-restyle, or restyle alone for an existing conversation
    (``conv_id`` set).
    """

    seed: Seed
    persona: Persona
    random_seed: int
    conv_id: str | None = None  # the conversation a restyle-only job works on
    conv: str | None = None
    passes: tuple[Phase, ...] = ()
    restyled: str | None = None  # the twin's thread, for a judge job (a run fills it in after a restyle)

    def __post_init__(self) -> None:
        if not self.passes:
            default: tuple[Phase, ...] = ("restyle",) if self.conv_id else ("generate", "restyle")
            object.__setattr__(self, "passes", default)

    @property
    def kind(self) -> Phase:
        """The job's first pass: what it is (a new conversation, a restyle...)."""
        return self.passes[0]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.seed.tweet_id, self.persona.motivation, self.persona.disposition)

    @property
    def cell(self) -> Cell:
        return Cell(self.seed, self.persona, self.random_seed)

    @property
    def label(self) -> str:
        return f"{self.seed.tweet_id} / {self.persona.label}"

    def pass_seed(self, phase: Phase) -> int:
        """The random seed of one of this job's passes: the job's own for a generation."""
        return self.random_seed if phase == "generate" else job_random_seed(self.random_seed, phase)

    def runs(self, restyle: bool = True) -> tuple[Phase, ...]:
        """The passes a run makes of this job (``restyle=False`` drops a generation's restyle)."""
        if restyle or self.kind != "generate":
            return self.passes
        return tuple(p for p in self.passes if p != "restyle")


@dataclass(frozen=True)
class Cell:
    """A seed x persona the user named; ``random_seed`` None: derived by :func:`job_random_seed`."""

    seed: Seed
    persona: Persona
    random_seed: int | None = None


@dataclass(frozen=True)
class PlanRequest:
    """What the user asked for, in the words of the CLI's options and the app's choices.

    ``personas`` is "random" (one drawn per seed), "all", or one persona's label. ``cells`` names
    the work outright (rerun, regenerate, paired reruns): each runs even if done. ``again`` runs
    cells already done; ``fill`` only the missing cells of the grid, balanced across personas;
    ``resume`` puts restyles of conversations saved without a twin first.
    """

    seeds: Sequence[Seed] = ()
    personas: str = RANDOM
    motivations: Sequence[str] | None = None
    dispositions: Sequence[str] | None = None
    limit: int | None = None
    again: bool = False
    kind: Phase = "generate"
    fill: bool = False
    base_seed: int | None = None
    draw_seed: int | None = None  # persona draws in random mode; None: from base_seed (or 0)
    cells: Sequence[Cell] = ()
    restyle: bool = True
    resume: bool = False
    judge: bool = False  # each restyled pair is judged too (kind "judge": judge existing pairs)


@dataclass
class Plan:
    """The jobs to run, and what the caller tells the user about them."""

    jobs: list[Job]
    already_done: int = 0  # cells skipped because they hold a conversation
    personas: int = 0  # the personas the request covers
    resumed: int = 0  # restyle-only jobs put first (``resume``)
    unreadable: list[Problem] = field(default_factory=list)  # conversations that cannot be restyled
    coverage: Coverage | None = None  # the grid, for ``fill``
    stale: int = 0  # judge: pairs judged under another judge.txt or other criteria (--again redoes them)
    not_restyled: int = 0  # judge: conversations without a twin, nothing to judge yet

    @property
    def passes(self) -> int:
        return sum(len(job.passes) for job in self.jobs)


Planner = Callable[[PlanRequest, Experiment, ConversationStore], Plan]


def plan(request: PlanRequest, experiment: Experiment, store: ConversationStore | None = None) -> Plan:
    """The jobs for a request; the experiment's store is read to skip what is done."""
    store = store or ConversationStore(experiment.dir)
    planner = PLANNERS.get(request.kind)
    if planner is None:
        raise ConvogenError(Problem(None, f"no planner for {request.kind} jobs"))
    return planner(request, experiment, store)


def _grid(request: PlanRequest, experiment: Experiment) -> list[Persona]:
    grid = filter_personas(experiment.personas(), request.motivations, request.dispositions)
    if request.personas not in (RANDOM, ALL):
        grid = [p for p in grid if p.label == request.personas]
        if not grid:
            raise ConvogenError(Problem(experiment.setup_file, f"no persona '{request.personas}'"))
    if not grid:
        raise ConvogenError(Problem(experiment.setup_file, "no persona to run", hint="check user_profiles"))
    return grid


def _cell_job(request: PlanRequest, seed: Seed, persona: Persona, random_seed: int | None = None) -> Job:
    if random_seed is None:
        base = request.base_seed
        random_seed = job_random_seed(base, seed.tweet_id, persona.motivation, persona.disposition)
    passes: tuple[Phase, ...] = ("generate", *FOLLOW_UPS["generate"]) if request.restyle else ("generate",)
    if request.restyle and request.judge:
        passes = (*passes, *JUDGED)
    return Job(seed, persona, random_seed, passes=passes)


def _plan_generate(request: PlanRequest, experiment: Experiment, store: ConversationStore) -> Plan:
    """New conversations: named cells, the missing cells (fill), or seeds x personas."""
    if request.cells:
        result = _plan_cells(request, experiment)
    elif request.fill:
        result = _plan_fill(request, experiment, store)
    else:
        result = _plan_grid(request, experiment, store)
    if request.resume and request.restyle:
        restyles = _plan_restyle(request, experiment, store)
        result.jobs[:0] = restyles.jobs
        result.resumed, result.unreadable = len(restyles.jobs), restyles.unreadable
    return result


def _plan_grid(request: PlanRequest, experiment: Experiment, store: ConversationStore) -> Plan:
    """Seeds x personas in seed order; with a limit, the first ``limit`` not done yet.

    In random mode a seed counts as done when any conversation exists for it.
    """
    grid = _grid(request, experiment)
    draw = request.draw_seed if request.draw_seed is not None else (request.base_seed or 0)
    candidates: list[tuple[Seed, Persona]] = []
    for s in request.seeds:
        if request.personas == RANDOM:
            candidates.append((s, draw_persona(grid, s.tweet_id, draw)))
        else:
            candidates += [(s, p) for p in grid]
    done_keys = set() if request.again else store.done_keys()
    done_seeds = {k[0] for k in done_keys}
    jobs: list[Job] = []
    skipped = 0
    for s, p in candidates:
        key = (s.tweet_id, p.motivation, p.disposition)
        if (s.tweet_id in done_seeds) if request.personas == RANDOM else key in done_keys:
            skipped += 1
            continue
        if request.limit is not None and len(jobs) >= request.limit:
            break
        jobs.append(_cell_job(request, s, p))
    return Plan(jobs, skipped, len(grid))


def _plan_fill(request: PlanRequest, experiment: Experiment, store: ConversationStore) -> Plan:
    """The missing cells of these seeds x the (chosen) personas, the least-held persona first."""
    if request.again:
        raise ConvogenError(Problem(None, "--fill runs only missing cells: it cannot go with --again"))
    personas = filter_personas(experiment.personas(), request.motivations, request.dispositions)
    grid = coverage_of(request.seeds, personas, store.list(), trashed_keys(store))
    jobs = [_cell_job(request, s, p) for s, p in fill_cells(grid, request.limit)]
    return Plan(jobs, 0, len(personas), coverage=grid)


def _plan_cells(request: PlanRequest, experiment: Experiment) -> Plan:
    """Cells named outright, run as given; a persona still in the setup gets its current texts."""
    current = {p.label: p for p in experiment.personas()}
    jobs = [
        _cell_job(request, c.seed, current.get(c.persona.label, c.persona), c.random_seed)
        for c in request.cells
    ]
    return Plan(jobs, 0, len({c.persona.label for c in request.cells}))


def _plan_restyle(request: PlanRequest, experiment: Experiment, store: ConversationStore) -> Plan:
    """Restyle-only jobs for conversations without a twin; unreadable ones are named, not hidden."""
    jobs: list[Job] = []
    problems: list[Problem] = []
    for conv_id in store.without_twin():
        try:
            record, _ = store.load(conv_id)
        except ConvogenError as exc:
            problems.extend(exc.problems[:1] or [Problem(store.conversation_path(conv_id), str(exc))])
            continue
        names = record.persona
        persona = Persona(
            names.motivation if names else "",
            names.disposition if names else "",
            record.motivation,
            record.disposition,
        )
        seed = job_random_seed(request.base_seed, conv_id, "restyle")
        passes: tuple[Phase, ...] = ("restyle", *JUDGED) if request.judge else ("restyle",)
        jobs.append(Job(Seed(record.tweet_id, record.tweet), persona, seed, conv_id, record.conv, passes))
    return Plan(jobs, 0, 0, unreadable=problems)


def _plan_judge(request: PlanRequest, experiment: Experiment, store: ConversationStore) -> Plan:
    """Judge jobs for restyled pairs without a judgment (every pair with ``again``), oldest first.

    A pair judged under another judge.txt or other criteria is counted stale, not redone, unless
    ``again``: rejudging is always asked for.
    """
    keys = current_keys(experiment)
    result = Plan([], 0, 0)
    for row in sorted(store.list(), key=lambda r: r.created_at):
        if not row.restyled:
            result.not_restyled += 1
            continue
        try:
            record, twin = store.load(row.id)
            judgment = store.load_judgment(row.id)
        except ConvogenError as exc:
            result.unreadable.extend(exc.problems[:1] or [Problem(store.conversation_path(row.id), str(exc))])
            continue
        if judgment is not None and not request.again:
            stale = is_stale(judgment, keys)
            result.stale += stale
            result.already_done += not stale
            continue
        if twin is None or (request.limit is not None and len(result.jobs) >= request.limit):
            continue
        persona = Persona(row.motivation, row.disposition, record.motivation, record.disposition)
        seed = job_random_seed(request.base_seed, row.id, "judge")
        cell = Seed(record.tweet_id, record.tweet)
        result.jobs.append(Job(cell, persona, seed, row.id, record.conv, ("judge",), twin.restyled_conv))
    return result


PLANNERS: dict[Phase, Planner] = {"generate": _plan_generate, "restyle": _plan_restyle, "judge": _plan_judge}
