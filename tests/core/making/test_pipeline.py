"""The pipeline as the app uses it: events in order, cancel leaves no file, edits without a reload."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from convogen_tui.core.making.check import seeds_for
from convogen_tui.core.making.experiment import load_experiment
from convogen_tui.core.making.pipeline import (
    JobFinished,
    JobStarted,
    Pipeline,
    RunFinished,
    RunStarted,
    TokenChunk,
)
from convogen_tui.llm.loader import open_backend

pytestmark = pytest.mark.llama  # runs the embedded model through llama.cpp


def small_pipeline(sample: Path, max_tokens: int = 12) -> Pipeline:
    experiment = load_experiment(sample)
    sampling = experiment.sampling.model_copy(update={"max_tokens": max_tokens})
    return Pipeline(experiment, open_backend(experiment), sampling=sampling)


def test_events_stream_tokens_then_files_for_both_passes(sample: Path) -> None:
    pipeline = small_pipeline(sample)
    plan = pipeline.plan(seeds_for(pipeline.experiment).seeds, limit=1, seed=1)
    events = list(pipeline.run(plan.jobs))
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    kinds = [(type(e).__name__, getattr(e, "phase", "")) for e in events[1:-1]]
    first_gen_chunk = kinds.index(("TokenChunk", "generate"))
    assert kinds[0] == ("JobStarted", "generate")
    gen_done = kinds.index(("JobFinished", "generate"))
    assert (
        first_gen_chunk
        < gen_done
        < kinds.index(("JobStarted", "restyle"))
        < kinds.index(("JobFinished", "restyle"))
    )
    streamed = "".join(e.text for e in events if isinstance(e, TokenChunk) and e.phase == "generate")
    finished = [e for e in events if isinstance(e, JobFinished)]
    saved = json.loads(finished[0].path.read_text(encoding="utf-8"))
    assert streamed and saved["conv"] == streamed.strip()
    assert events[-1].conversations == 1 and events[-1].restyled == 1


def test_cancel_mid_stream_writes_no_file(sample: Path) -> None:
    pipeline = small_pipeline(sample, max_tokens=200)
    plan = pipeline.plan(seeds_for(pipeline.experiment).seeds, limit=2, seed=1)
    cancel = threading.Event()
    events = []
    for event in pipeline.run(plan.jobs, cancel=cancel):
        events.append(event)
        if isinstance(event, TokenChunk) and event.n_tokens >= 3:
            cancel.set()
    summary = events[-1]
    assert isinstance(summary, RunFinished) and summary.cancelled and summary.conversations == 0
    assert not (sample / "conversations").exists() or not list((sample / "conversations").iterdir())


def test_template_edit_takes_effect_without_reloading_the_model(sample: Path) -> None:
    pipeline = small_pipeline(sample)
    backend = pipeline.backend
    seed = seeds_for(pipeline.experiment).seeds[0]
    persona = pipeline.experiment.personas()[0]
    before = pipeline.preview(pipeline.generation_prompt(seed, persona))
    template = sample / "conv-gen.txt"
    template.write_text(template.read_text() + "\nKeep every message under twenty words.\n")
    pipeline.reload_templates()
    after = pipeline.preview(pipeline.generation_prompt(seed, persona))
    assert "under twenty words" in after.text and after.n_tokens > before.n_tokens
    assert open_backend(pipeline.experiment) is backend  # the same loaded model
    assert after.n_ctx == 4096 and after.prompt_format == "chat-template"
    assert seed.tweet in after.text and persona.disposition_text in after.text


def test_job_started_reports_prompt_tokens(sample: Path) -> None:
    pipeline = small_pipeline(sample, max_tokens=2)
    plan = pipeline.plan(seeds_for(pipeline.experiment).seeds, limit=1, seed=2)
    started = [e for e in pipeline.run(plan.jobs, restyle=False) if isinstance(e, JobStarted)]
    prompt = pipeline.generation_prompt(plan.jobs[0].seed, plan.jobs[0].persona)
    assert started[0].prompt_tokens == pipeline.backend.count_tokens(prompt)
