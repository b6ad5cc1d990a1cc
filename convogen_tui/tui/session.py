"""What the app knows about the open experiment: setup, store, seeds, picks and the loaded model.

No Textual here: screens read and change this state on the UI thread; thread workers compute (read
seeds, check, list) and hand their results back in messages, and the UI thread stores them here.
Picks and the persona choice are remembered per experiment (``core.picks``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.keeping.picks import PickState, load_picks, save_picks
from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.core.making.backend import Backend
from convogen_tui.core.making.check import CheckReport, seeds_for
from convogen_tui.core.making.experiment import Experiment, Persona, load_experiment
from convogen_tui.core.making.pipeline import Pipeline
from convogen_tui.core.making.planner import ALL, RANDOM, Cell, Job, Plan, PlanRequest, job_random_seed
from convogen_tui.core.making.planner import plan as plan_jobs
from convogen_tui.core.making.seeds import Seed, SeedSet

__all__ = ["ALL", "RANDOM", "Session"]


@dataclass
class Session:
    """One open experiment. ``persona_choice`` is "random", "all" or a persona label."""

    experiment: Experiment
    model: str | None = None
    max_tokens: int | None = None
    seed: int | None = None  # fixed: the same text on CPU every run (tests, demos); None: fresh
    backend: Backend | None = None
    picked: list[Seed] = field(default_factory=list)
    persona_choice: str = RANDOM
    last_job: Job | None = None
    threads: int | None = None  # --threads for the app; None: the setup's, else the default
    report: CheckReport | None = None  # the last `convogen check` of this experiment
    editor_wide: bool = False  # the template editor over the whole width (F10), kept while it is open
    _seeds: SeedSet | None = None
    _pipeline: Pipeline | None = None
    _picked_ids: list[str] = field(default_factory=list)  # remembered picks, until the seeds are read

    @classmethod
    def open(
        cls,
        path: Path,
        model: str | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        threads: int | None = None,
    ) -> Session:
        session = cls(load_experiment(path), model, max_tokens, seed, threads=threads)
        state = load_picks(session.experiment.dir)
        session._picked_ids = list(state.picked)
        session.persona_choice = state.persona_choice
        return session

    @property
    def store(self) -> ConversationStore:
        return ConversationStore(self.experiment.dir)

    def reload(self) -> Experiment:
        """Read the setup again after an edit; the loaded model is kept."""
        self.experiment = load_experiment(self.experiment.dir)
        self._pipeline = None
        self._seeds = None
        return self.experiment

    def use_backend(self, backend: Backend) -> None:
        """A newly loaded model: the next pipeline is built on it."""
        self.backend = backend
        self._pipeline = None

    def personas(self) -> list[Persona]:
        return self.experiment.personas()

    def seeds(self) -> SeedSet:
        """The experiment's seed file, read once; raises ConvogenError when there is none."""
        if self._seeds is None:
            self.set_seeds(seeds_for(self.experiment))
        assert self._seeds is not None
        return self._seeds

    def set_seeds(self, seeds: SeedSet) -> None:
        """Seeds read by a worker; the picks follow them by id (ids no longer there drop out)."""
        self._seeds = seeds
        by_id = {s.tweet_id: s for s in seeds.seeds}
        ids = [s.tweet_id for s in self.picked] if self.picked else self._picked_ids
        self.picked = [by_id[i] for i in ids if i in by_id]
        self._picked_ids = []

    def forget_seeds(self) -> None:
        """The seed file changed: the next seeds() reads it again; picks are kept by id."""
        if self.picked:
            self._picked_ids = [s.tweet_id for s in self.picked]
        self._seeds = None

    def set_picked(self, seeds: list[Seed]) -> None:
        self.picked = list(seeds)
        self.remember()

    def set_persona_choice(self, choice: str) -> None:
        if choice != self.persona_choice:
            self.persona_choice = choice
            self.remember()

    def remember(self) -> None:
        """Write the picks and persona choice for the next time this experiment is opened."""
        known = self.picked or self._seeds is not None  # before the seeds are read, keep what was stored
        ids = [s.tweet_id for s in self.picked] if known else self._picked_ids
        save_picks(self.experiment.dir, PickState(picked=ids, persona_choice=self.persona_choice))

    def pipeline(self, reload: bool = True) -> Pipeline:
        """The pipeline on the loaded model; templates are re-read (cheap) unless ``reload`` is off."""
        if self.backend is None:
            raise ConvogenError("no model is loaded (the title bar says why); F7 picks one")
        if self._pipeline is None:
            sampling = self.experiment.sampling
            if self.max_tokens is not None:
                sampling = sampling.model_copy(update={"max_tokens": self.max_tokens})
            self._pipeline = Pipeline(self.experiment, self.backend, sampling=sampling)
        elif reload:
            self._pipeline.reload_templates()
        return self._pipeline

    def jobs_for_picks(self) -> list[Job]:
        """Picked seeds x the persona choice, always run again (the user asked for them)."""
        seeds = self.seeds().seeds
        return self.jobs_for(self.picked or seeds[:1])

    def jobs_for(self, seeds: list[Seed]) -> list[Job]:
        """These seeds x the persona choice, run again even if done (the user asked for them).

        Planned without the model (``core.making.planner``), so a run asked for while the model
        loads can wait for it. Without a fixed seed each run draws its personas afresh, so repeated
        runs of one seed visit different personas.
        """
        draw = self.seed if self.seed is not None else job_random_seed(None)
        request = PlanRequest(
            seeds=seeds, personas=self.persona_choice, again=True, base_seed=self.seed, draw_seed=draw
        )
        return self.plan(request).jobs

    def cell_jobs(self, cells: list[Cell]) -> list[Job]:
        """Jobs for cells named outright (rerun, regenerate): personas get their current texts."""
        return self.plan(PlanRequest(cells=cells, base_seed=self.seed)).jobs

    def plan(self, request: PlanRequest) -> Plan:
        """What the planner (``core.making.planner``) makes of a request on this experiment."""
        return plan_jobs(request, self.experiment, self.store)

    def persona(self, label: str) -> Persona:
        for persona in self.personas():
            if persona.label == label:
                return persona
        raise ConvogenError(f"no persona '{label}' in this experiment")

    def rerun_job(self, job: Job | None = None) -> Job:
        """The same seed and persona (with fresh persona texts), planned again."""
        job = job or self.last_job
        if job is None:
            raise ConvogenError("nothing to rerun yet: generate once first (ctrl+g)")
        return self.cell_jobs([Cell(job.seed, job.persona)])[0]
