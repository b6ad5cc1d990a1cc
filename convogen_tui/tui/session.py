"""What the app knows about the open experiment: setup, store, seeds, picks and the loaded model.

No Textual here: screens read and change this state; the blocking parts (model load, listing) are
called from thread workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from convogen_tui.core.backend import Backend
from convogen_tui.core.check import seeds_for
from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.experiment import Experiment, Persona, load_experiment
from convogen_tui.core.pipeline import Job, Pipeline, job_random_seed
from convogen_tui.core.seeds import Seed, SeedSet
from convogen_tui.core.store import ConversationStore

RANDOM = "random"
ALL = "all"


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
    _seeds: SeedSet | None = None
    _pipeline: Pipeline | None = None

    @classmethod
    def open(
        cls, path: Path, model: str | None = None, max_tokens: int | None = None, seed: int | None = None
    ) -> Session:
        return cls(load_experiment(path), model, max_tokens, seed)

    @property
    def store(self) -> ConversationStore:
        return ConversationStore(self.experiment.dir)

    def reload(self) -> Experiment:
        """Read the setup again after an edit; the loaded model is kept."""
        self.experiment = load_experiment(self.experiment.dir)
        self._pipeline = None
        self._seeds = None
        return self.experiment

    def personas(self) -> list[Persona]:
        return self.experiment.personas()

    def seeds(self) -> SeedSet:
        """The experiment's seed file, read once; raises ConvogenError when there is none."""
        if self._seeds is None:
            self._seeds = seeds_for(self.experiment)
        return self._seeds

    def pipeline(self, reload: bool = True) -> Pipeline:
        """The pipeline on the loaded model; templates are re-read (cheap) unless ``reload`` is off."""
        if self.backend is None:
            raise ConvogenError("the model is still loading; try again in a moment")
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
        pipeline = self.pipeline()
        seeds = self.picked or self.seeds().seeds[:1]
        if self.persona_choice == ALL:
            return pipeline.plan(seeds, personas="all", again=True, seed=self.seed).jobs
        if self.persona_choice == RANDOM:
            # a fresh draw each time, so repeated runs of one seed visit different personas
            draw = self.seed if self.seed is not None else _fresh()
            return pipeline.plan(seeds, personas="random", again=True, seed=self.seed, draw_seed=draw).jobs
        persona = self.persona(self.persona_choice)
        return [Job(s, persona, job_random_seed(self.seed, s.tweet_id)) for s in seeds]

    def persona(self, label: str) -> Persona:
        for persona in self.personas():
            if persona.label == label:
                return persona
        raise ConvogenError(f"no persona '{label}' in this experiment")

    def rerun_job(self, job: Job | None = None) -> Job:
        """The same seed and persona (with fresh persona texts and a new random seed)."""
        job = job or self.last_job
        if job is None:
            raise ConvogenError("nothing to rerun yet: generate once first (ctrl+g)")
        try:
            persona = self.persona(job.persona.label)
        except ConvogenError:
            persona = job.persona
        return Job(job.seed, persona, job_random_seed(self.seed, job.seed.tweet_id, "rerun"))


def _fresh() -> int:
    return job_random_seed(None)
