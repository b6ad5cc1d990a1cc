"""Coverage of the seed x persona grid and `generate --fill` on the sample experiment: a scripted
backend for the states and the balance, the embedded model once for the command itself."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from convogen_tui.core.judging.stats import experiment_coverage
from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.core.making.check import seeds_for
from convogen_tui.core.making.experiment import Experiment, load_experiment
from convogen_tui.core.making.pipeline import JobFinished, Pipeline
from convogen_tui.core.making.planner import Plan, PlanRequest, plan
from convogen_tui.core.making.seeds import Seed
from tests.scripted import Script, ScriptedBackend

_TEXT = (
    "evidence study doctor water town council vote lab sample test data report question answer reason "
    "source claim trust money health risk safety news friend family science school record history"
)
WORDS = _TEXT.split()


def distinct_conversation(prompt: str) -> Script:
    """Eight clean turns whose words depend on the prompt, so no two conversations are near-duplicates."""
    rng = random.Random(hashlib.sha256(prompt.encode()).digest())
    lines = []
    for _ in range(8):
        lines.append("SocBot: " + " ".join(rng.choices(WORDS, k=12)) + ". What do you think?")
        lines.append("User: " + " ".join(rng.choices(WORDS, k=8)) + ".")
    return Script("\n".join(lines))


def run(pipeline: Pipeline, jobs) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.conv_id for e in pipeline.run(jobs, restyle=False) if isinstance(e, JobFinished)]


def fill(experiment: Experiment, store: ConversationStore, seeds: list[Seed], **options: Any) -> Plan:
    """`generate --fill` as the planner sees it."""
    return plan(PlanRequest(seeds=seeds, fill=True, **options), experiment, store)


def test_cells_are_done_flagged_deleted_or_missing_and_fill_runs_only_missing_ones(sample: Path) -> None:
    experiment = load_experiment(sample)
    pipeline = Pipeline(experiment, ScriptedBackend(default=distinct_conversation))
    seeds = seeds_for(experiment).seeds
    personas = experiment.personas()
    first = run(pipeline, pipeline.plan(seeds[:1], personas="all", seed=1).jobs)
    assert len(first) == len(personas) == 6
    store = ConversationStore(sample)
    by_persona = {(r.motivation, r.disposition): r.id for r in store.list()}
    p0, p1 = personas[0], personas[1]
    store.delete([by_persona[(p0.motivation, p0.disposition)]])
    store.set_mark(by_persona[(p1.motivation, p1.disposition)], "flagged")

    grid = experiment_coverage(experiment, store, store.list())
    assert grid.counts() == {"cells": 120, "done": 4, "flagged": 1, "deleted": 1, "missing": 114}
    assert grid.state(seeds[0], p0) == "deleted" and grid.state(seeds[0], p1) == "flagged"
    assert grid.state(seeds[0], personas[2]) == "done" and grid.state(seeds[1], p0) == "missing"

    jobs = fill(experiment, store, seeds, limit=7, base_seed=1).jobs
    assert all(grid.state(job.seed, job.persona) == "missing" for job in jobs)
    # the persona that lost its conversation catches up first, then every persona in turn
    assert [job.persona.label for job in jobs[:2]] == [p0.label, p0.label]
    assert Counter(job.persona.label for job in jobs) == {p.label: 1 for p in personas[1:]} | {p0.label: 2}
    run(pipeline, jobs)
    held = Counter(r.persona for r in ConversationStore(sample).list())
    assert set(held.values()) == {2}  # balanced: two conversations per persona
    after = experiment_coverage(experiment, store, ConversationStore(sample).list()).counts()
    assert after["missing"] == 114 - 7 and after["done"] == 4 + 7 and after["deleted"] == 1

    rest = fill(experiment, store, seeds, base_seed=1).jobs
    assert len(rest) == 107 and len({job.key for job in rest}) == 107
    assert not {job.key for job in rest} & {r.key for r in ConversationStore(sample).list()}


def test_fill_respects_the_persona_filters(sample: Path) -> None:
    experiment = load_experiment(sample)
    plan = fill(experiment, ConversationStore(sample), seeds_for(experiment).seeds, motivations=["attention"])
    jobs, grid = plan.jobs, plan.coverage
    assert grid is not None
    assert grid.counts()["cells"] == 40 and len(jobs) == 40
    assert {job.persona.motivation for job in jobs} == {"attention"}
    assert [job.persona.disposition for job in jobs[:4]] == ["hostile", "earnest", "hostile", "earnest"]


@pytest.mark.llama
def test_generate_fill_on_the_embedded_model(cli, sample: Path, datasets: Path) -> None:
    args = ("generate", "sample", "--root", datasets, "--fill", "--limit", "2", "--max-tokens", "8")
    code, out, err = cli(*args, "--no-restyle", "--seed", "5", "--parallel", "1")
    assert code == 0, err
    assert "filling 2 of 120 missing cell(s) of 120" in out
    first = [json.loads(p.read_text()) for p in (sample / "conversations").glob("*.json")]
    assert sorted((c["persona"]["motivation"], c["persona"]["disposition"]) for c in first) == [
        ("distrust", "cynical"),
        ("distrust", "sarcastic"),
    ]
    code, out, _ = cli(*args, "--no-restyle", "--seed", "5", "--parallel", "1")
    assert code == 0 and "filling 2 of 118 missing cell(s) of 120" in out
    code, out, _ = cli("stats", "sample", "--root", datasets, "--json")
    stats = json.loads(out)
    assert stats["conversations"] == 4
    coverage = stats["coverage"]
    assert coverage["missing"] == 116 and coverage["done"] + coverage["flagged"] == 4
    assert sorted(p for p, c in coverage["by_persona"].items() if c["missing"] == 19) == [
        "belonging x earnest",
        "belonging x sarcastic",
        "distrust x cynical",
        "distrust x sarcastic",
    ]
    assert stats["throughput"]["completion_tokens"] > 0 and stats["throughput"]["tokens_per_second"] > 0
    code, _, err = cli(*args, "--again")
    assert code == 1 and "--fill" in err and "--again" in err
