"""One planner for every way of starting work: each entry point gets the jobs ``planner.plan`` makes.

The core cases run on the sample experiment without a model; the CLI runs in-process against a
loopback OpenAI-compatible server (tests/fake_openai.py), so each written file names its cell and
the random seed it was made with, and those must be the planner's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.core.making.check import seeds_for
from convogen_tui.core.making.experiment import Persona, load_experiment
from convogen_tui.core.making.pipeline import Pipeline
from convogen_tui.core.making.planner import Cell, Job, PlanRequest, job_random_seed, plan
from convogen_tui.core.making.seeds import Seed
from convogen_tui.core.persona import PersonaName, persona_label
from tests.fake_openai import FakeOpenAI, running
from tests.scripted import ScriptedBackend

Made = tuple[str, str, str, int]  # tweet id, motivation, disposition, random seed


def cells_of(jobs: list[Job]) -> list[Made]:
    return [(j.seed.tweet_id, j.persona.motivation, j.persona.disposition, j.random_seed) for j in jobs]


def written(expt: Path) -> list[Made]:
    """Every conversation on disk as (cell, random seed), oldest first."""
    records = [json.loads(p.read_text()) for p in (expt / "conversations").glob("*.json")]
    records.sort(key=lambda r: r["provenance"]["created_at"])
    return [
        (
            r["tweet_id"],
            r["persona"]["motivation"],
            r["persona"]["disposition"],
            r["provenance"].get("random_seed"),
        )
        for r in records
    ]


# the planner itself --------------------------------------------------------------------------
def test_one_seed_recipe_whatever_the_persona_choice(sample: Path) -> None:
    experiment = load_experiment(sample)
    seeds = seeds_for(experiment).seeds[:3]
    one = experiment.personas()[2]
    for personas in ("random", "all", one.label):
        jobs = plan(PlanRequest(seeds=seeds, personas=personas, base_seed=9), experiment).jobs
        assert jobs
        for job in jobs:
            key = (job.seed.tweet_id, job.persona.motivation, job.persona.disposition)
            assert job.random_seed == job_random_seed(9, *key)
    assert {j.persona for j in plan(PlanRequest(seeds=seeds, personas=one.label), experiment).jobs} == {one}


def test_each_job_has_its_kind_and_passes(sample: Path) -> None:
    experiment = load_experiment(sample)
    seeds = seeds_for(experiment).seeds[:2]
    both = plan(PlanRequest(seeds=seeds, base_seed=1), experiment)
    assert [j.passes for j in both.jobs] == [("generate", "restyle")] * 2 and both.passes == 4
    alone = plan(PlanRequest(seeds=seeds, base_seed=1, restyle=False), experiment)
    assert [j.kind for j in alone.jobs] == ["generate"] * 2 and alone.passes == 2
    judged = plan(PlanRequest(seeds=seeds, base_seed=1, judge=True), experiment)
    assert [j.passes for j in judged.jobs] == [("generate", "restyle", "judge")] * 2 and judged.passes == 6
    assert plan(PlanRequest(kind="judge"), experiment).jobs == []  # nothing restyled to judge yet
    with pytest.raises(ConvogenError, match="no planner for compare jobs"):
        plan(PlanRequest(kind="compare"), experiment)  # type: ignore[arg-type]


def test_named_cells_run_as_given_with_the_setup_texts(sample: Path) -> None:
    """Reruns, regenerate and paired reruns: a given random seed is kept, a missing one derived."""
    experiment = load_experiment(sample)
    current = experiment.personas()[0]
    stale = Persona(current.motivation, current.disposition, "old text", "old text")
    gone = Persona("vanished", "persona", "m", "d")
    cells = [Cell(Seed("1", "a"), stale, 1234), Cell(Seed("2", "b"), gone)]
    jobs = plan(PlanRequest(cells=cells, base_seed=3), experiment).jobs
    assert cells_of(jobs) == [
        ("1", current.motivation, current.disposition, 1234),
        ("2", "vanished", "persona", job_random_seed(3, "2", "vanished", "persona")),
    ]
    assert jobs[0].persona == current and jobs[1].persona == gone  # fresh texts when still in the setup


def test_restyle_jobs_are_one_pass_each_and_resume_comes_first(sample: Path) -> None:
    experiment = load_experiment(sample)
    pipeline = Pipeline(experiment, ScriptedBackend())
    seeds = seeds_for(experiment).seeds
    list(pipeline.run(pipeline.plan(seeds, limit=2, seed=1).jobs, restyle=False))
    restyles = plan(PlanRequest(kind="restyle", base_seed=4), experiment)
    assert [j.passes for j in restyles.jobs] == [("restyle",)] * 2 and restyles.passes == 2
    ids = ConversationStore(sample).without_twin()
    assert [j.random_seed for j in restyles.jobs] == [job_random_seed(4, i, "restyle") for i in ids]
    resumed = plan(PlanRequest(seeds=seeds, limit=1, base_seed=1, resume=True), experiment)
    assert resumed.resumed == 2 and [j.kind for j in resumed.jobs] == ["restyle", "restyle", "generate"]
    assert resumed.passes == 4 and resumed.already_done == 2


def test_persona_label_is_one_spelling(sample: Path) -> None:
    persona = load_experiment(sample).personas()[0]
    assert persona.label == persona_label(persona.motivation, persona.disposition)
    assert persona.name == PersonaName(persona.motivation, persona.disposition)
    assert persona.name.label == persona.label


# the CLI -------------------------------------------------------------------------------------
def _remote(datasets: Path, url: str, *extra: str) -> tuple[str, ...]:
    base = ("--root", str(datasets), "--backend", "openai", "--base-url", url, "--concurrency", "1")
    return (*extra[:2], *base, *extra[2:])


@pytest.mark.process
def test_cli_generate_limit_again_fill_and_restyle_run_the_planners_jobs(
    cli, sample: Path, datasets: Path
) -> None:  # type: ignore[no-untyped-def]
    experiment = load_experiment(sample)
    seeds = seeds_for(experiment).seeds
    with running(FakeOpenAI()) as server:
        expected = plan(PlanRequest(seeds=seeds, limit=2, base_seed=3), experiment).jobs
        code, out, err = cli(
            *_remote(datasets, server.url, "generate", "sample", "--limit", "2", "--seed", "3")
        )
        assert code == 0, err
        assert written(sample) == cells_of(expected)

        again = plan(PlanRequest(seeds=seeds, limit=1, again=True, base_seed=3), experiment).jobs
        args = ("generate", "sample", "--limit", "1", "--again", "--seed", "3", "--no-restyle")
        code, _, err = cli(*_remote(datasets, server.url, *args))
        assert code == 0, err
        assert written(sample)[2:] == cells_of(again) == cells_of(expected[:1])  # --again: redone

        fill = plan(PlanRequest(seeds=seeds, fill=True, limit=3, base_seed=5), experiment).jobs
        args = ("generate", "sample", "--fill", "--limit", "3", "--seed", "5", "--no-restyle")
        code, out, err = cli(*_remote(datasets, server.url, *args))
        assert code == 0, err
        assert "filling 3 of" in out and written(sample)[3:] == cells_of(fill)

        restyles = plan(PlanRequest(kind="restyle", base_seed=6), experiment).jobs
        assert len(restyles) == 4  # the --again and --fill conversations
        code, _, err = cli(*_remote(datasets, server.url, "restyle", "sample", "--seed", "6"))
        assert code == 0, err
    for job in restyles:
        twin = json.loads((sample / "restyled-conversations" / f"{job.conv_id}.json").read_text())
        assert twin["provenance"]["random_seed"] == job.pass_seed("restyle")
