"""Run control on the embedded model through llama.cpp: prompt progress, skip one stream, threads, ETA.

The same behaviours run in milliseconds on the scripted backend (test_pipeline_scripted.py); here
they are checked once on the real engine, whose prompt evaluation and per-request cancel they need.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convogen_tui.core.making.check import seeds_for
from convogen_tui.core.making.experiment import load_experiment
from convogen_tui.core.making.pipeline import (
    JobSkipped,
    JobStarted,
    Pipeline,
    PromptProgress,
    RunFinished,
    Skips,
    TokenChunk,
)
from convogen_tui.llm.llama_cpp import default_threads
from convogen_tui.llm.loader import open_backend

pytestmark = pytest.mark.llama


def test_the_engine_reports_reading_the_prompt(sample: Path) -> None:
    experiment = load_experiment(sample)
    backend = open_backend(experiment)
    backend.engine.forget()  # type: ignore[attr-defined]  # no cached prefix: the whole prompt is read
    sampling = experiment.sampling.model_copy(update={"max_tokens": 4})
    pipeline = Pipeline(experiment, backend, sampling=sampling)
    plan = pipeline.plan(seeds_for(experiment).seeds, limit=1, seed=1)
    events = list(pipeline.run(plan.jobs, restyle=False))
    progress = [e for e in events if isinstance(e, PromptProgress)]
    first_token = next(i for i, e in enumerate(events) if isinstance(e, TokenChunk))
    prompt_tokens = backend.count_tokens(pipeline.generation_prompt(plan.jobs[0].seed, plan.jobs[0].persona))
    assert progress and progress[0].done == 0 and progress[0].total == prompt_tokens
    assert all(events.index(p) < first_token for p in progress)


def test_skipping_one_stream_on_the_engine_leaves_no_file_and_the_other_finishes(sample: Path) -> None:
    experiment = load_experiment(sample)
    sampling = experiment.sampling.model_copy(update={"max_tokens": 24})
    pipeline = Pipeline(experiment, open_backend(experiment), sampling=sampling)
    plan = pipeline.plan(seeds_for(experiment).seeds, limit=2, seed=3)
    skips = Skips()
    events = []
    for event in pipeline.run(plan.jobs, restyle=False, parallel=2, skips=skips):
        events.append(event)
        if isinstance(event, TokenChunk) and event.job == plan.jobs[0] and event.n_tokens == 3:
            skips.skip(0)
    summary = events[-1]
    assert isinstance(summary, RunFinished) and not summary.cancelled
    assert [e.job for e in events if isinstance(e, JobSkipped)] == [plan.jobs[0]]
    assert (summary.conversations, summary.skipped) == (1, 1)
    saved = [json.loads(p.read_text()) for p in (sample / "conversations").glob("*.json")]
    assert [r["tweet_id"] for r in saved] == [plan.jobs[1].seed.tweet_id]


def test_a_skip_while_the_prompt_is_read_stops_reading_it(sample: Path) -> None:
    """Skipped at its first prompt report, a job's prompt is read no further: the next job's
    prompt is all the engine evaluates (on a 70B model a long prompt is seconds of GPU)."""
    experiment = load_experiment(sample)
    backend = open_backend(experiment)
    engine = backend.engine  # type: ignore[attr-defined]
    engine.forget()  # no cached prefix from earlier tests
    sampling = experiment.sampling.model_copy(update={"max_tokens": 4})
    pipeline = Pipeline(experiment, backend, sampling=sampling)
    plan = pipeline.plan(seeds_for(experiment).seeds, limit=2, seed=5)
    first, second = plan.jobs
    skips = Skips()
    before = engine.prompt_tokens_evaluated
    events = []
    for event in pipeline.run(plan.jobs, restyle=False, parallel=1, skips=skips):
        events.append(event)
        if isinstance(event, PromptProgress) and event.job == first:
            [started] = [e for e in events if isinstance(e, JobStarted) and e.job == first]
            skips.skip(started.index)
    summary = events[-1]
    assert isinstance(summary, RunFinished) and (summary.conversations, summary.skipped) == (1, 1)
    assert [e.job for e in events if isinstance(e, JobSkipped)] == [first]
    assert not [e for e in events if isinstance(e, TokenChunk) and e.job == first]
    second_prompt = backend.count_tokens(pipeline.generation_prompt(second.seed, second.persona))
    assert engine.prompt_tokens_evaluated - before == second_prompt  # none of the skipped prompt


def test_threads_from_the_setup_and_the_command_line(cli, sample: Path, datasets: Path) -> None:  # type: ignore[no-untyped-def]
    assert 1 <= default_threads() <= 8
    setup_path = sample / "expt-setup.json"
    setup = json.loads(setup_path.read_text())
    setup["threads"] = 1
    setup_path.write_text(json.dumps(setup, indent=2))
    backend = open_backend(load_experiment(sample))
    assert backend.n_threads == 1 and "1 thread" in backend.describe()  # type: ignore[attr-defined]
    code, out, err = cli(
        "generate", "sample", "--root", datasets, "--limit", "1", "--max-tokens", "4", "--no-restyle",
        "--threads", "2", "--seed", "1",
    )  # fmt: skip
    assert code == 0, err
    assert backend.n_threads == 2  # type: ignore[attr-defined]  # the model stayed loaded, threads changed
    assert ", ETA 0:00:00 ->" not in out  # the ETA is on each finished line, before nothing else
    assert "ETA 0:00:00" in out
    setup["threads"] = 0
    setup_path.write_text(json.dumps(setup, indent=2))
    code, out, _ = cli("check", "sample", "--root", datasets)
    assert code == 1 and "threads" in out
