"""The pipeline on the scripted backend: event order, files, cancel, failures, many streams, parallel.

No model runs here, so each test takes milliseconds; the same behaviours are checked once more
on the embedded model in test_pipeline.py and test_batching.py.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.keeping.records import SCHEMA_VERSION, read_conversation
from convogen_tui.core.making.backend import choose_parallel
from convogen_tui.core.making.check import seeds_for
from convogen_tui.core.making.experiment import load_experiment
from convogen_tui.core.making.pipeline import (
    JobFailed,
    JobFinished,
    JobSkipped,
    JobStarted,
    Pipeline,
    PromptProgress,
    RunFinished,
    RunStarted,
    Skips,
    TokenChunk,
)
from tests.scripted import EIGHT_TURNS, Script, ScriptedBackend, ScriptedBatchBackend


def pipeline_on(sample: Path, backend: ScriptedBackend) -> Pipeline:
    return Pipeline(load_experiment(sample), backend)


def test_events_come_in_order_and_the_files_hold_what_streamed(sample: Path) -> None:
    backend = ScriptedBackend([Script("SocBot: hello\nUser: go away"), Script("SocBot: 🧵 1/2\nUser: no")])
    pipeline = pipeline_on(sample, backend)
    plan = pipeline.plan(seeds_for(pipeline.experiment).seeds, limit=1, seed=3)
    events = list(pipeline.run(plan.jobs))
    names = [(type(e).__name__, getattr(e, "phase", "")) for e in events]
    assert names[0] == ("RunStarted", "") and names[-1] == ("RunFinished", "")
    assert names.index(("JobStarted", "generate")) < names.index(("TokenChunk", "generate"))
    assert names.index(("JobFinished", "generate")) < names.index(("JobStarted", "restyle"))
    finished = [e for e in events if isinstance(e, JobFinished)]
    record = read_conversation(finished[0].path)
    assert record.conv == "SocBot: hello\nUser: go away"
    assert record.provenance is not None and record.provenance.schema_version == SCHEMA_VERSION
    assert record.provenance.model.name == "scripted" and record.persona is not None
    twin = json.loads(finished[1].path.read_text(encoding="utf-8"))
    assert twin["restyled_conv"] == "SocBot: 🧵 1/2\nUser: no" and twin["tweet_id"] == record.tweet_id
    # the restyle prompt carries the saved conversation
    assert "SocBot: hello" in backend.prompts[1]


def test_cancel_while_a_stream_is_held_writes_no_file(sample: Path) -> None:
    gate = threading.Event()  # never set: the stream stops after two chunks until cancelled
    backend = ScriptedBackend(default=Script(hold_after=2, gate=gate))
    pipeline = pipeline_on(sample, backend)
    plan = pipeline.plan(seeds_for(pipeline.experiment).seeds, limit=3, seed=1)
    cancel = threading.Event()
    events = []
    for event in pipeline.run(plan.jobs, cancel=cancel):
        events.append(event)
        if isinstance(event, TokenChunk) and event.n_tokens == 2:
            cancel.set()
    summary = events[-1]
    assert isinstance(summary, RunFinished) and summary.cancelled and summary.conversations == 0
    assert not (sample / "conversations").exists() or not any((sample / "conversations").iterdir())


def test_a_failed_job_is_reported_and_the_run_goes_on(sample: Path) -> None:
    backend = ScriptedBackend([Script(fail="the server said no")])
    pipeline = pipeline_on(sample, backend)
    plan = pipeline.plan(seeds_for(pipeline.experiment).seeds, limit=2, seed=1)
    events = list(pipeline.run(plan.jobs, restyle=False))
    failed = [e for e in events if isinstance(e, JobFailed)]
    assert [f.message for f in failed] == ["the server said no"]
    assert events[-1].conversations == 1 and events[-1].failed == 1


def test_many_streams_run_at_once_and_each_is_saved_once(sample: Path) -> None:
    backend = ScriptedBackend(slots=4)
    pipeline = pipeline_on(sample, backend)
    plan = pipeline.plan(seeds_for(pipeline.experiment).seeds, limit=6, seed=1)
    events = list(pipeline.run(plan.jobs, parallel=4))
    started = [e for e in events if isinstance(e, RunStarted)]
    assert started[0].parallel == 4 and backend.max_running == 4
    summary = events[-1]
    assert summary.conversations == 6 and summary.restyled == 6
    convs = sorted((sample / "conversations").glob("*.json"))
    assert len(convs) == 6 and all(read_conversation(p).conv == EIGHT_TURNS for p in convs)
    assert sorted(p.name for p in (sample / "restyled-conversations").glob("*.json")) == [
        p.name for p in convs
    ]


def test_a_rerun_skips_done_jobs_and_restyles_what_lacks_a_twin(sample: Path) -> None:
    pipeline = pipeline_on(sample, ScriptedBackend())
    seeds = seeds_for(pipeline.experiment).seeds
    list(pipeline.run(pipeline.plan(seeds, limit=2, seed=1).jobs, restyle=False))
    assert pipeline.plan(seeds[:2], seed=1).jobs == []  # both done
    more = pipeline.plan(seeds, limit=2, seed=1)  # --limit 2 again: two new conversations
    assert [j.seed for j in more.jobs] == seeds[2:4] and more.already_done == 2
    restyle = pipeline.restyle_jobs(seed=1)
    assert len(restyle) == 2
    events = list(pipeline.run(restyle))
    phases = {e.phase for e in events if isinstance(e, JobStarted)}
    assert events[-1].restyled == 2 and phases == {"restyle"}


def test_the_stream_count_is_decided_once_and_lowered_to_fit_memory() -> None:
    backend = ScriptedBackend(slots=8, memory_per_stream=100 * 2**20, memory_free=350 * 2**20)
    auto = choose_parallel(backend, None, n_jobs=20)
    assert auto.n == 8 and auto.reason == "scripted slots"
    few = choose_parallel(backend, None, n_jobs=3)
    assert few.n == 3 and "only 3 job(s)" in few.reason
    big = choose_parallel(backend, 1000, n_jobs=2000)
    assert big.n == 3 and "lowered to 3" in big.reason and big.memory_bytes == 300 * 2**20
    assert "KV cache 300 MiB" in big.describe()
    with pytest.raises(ConvogenError, match="at least 1"):
        choose_parallel(backend, 0, n_jobs=1)


def test_skipping_one_stream_lets_the_others_finish(sample: Path) -> None:
    """Skip the held job: its pass stops and writes nothing, its restyle never runs, others finish."""
    gate = threading.Event()
    backend = ScriptedBatchBackend([Script(hold_after=2, gate=gate), Script(), Script()], slots=2)
    pipeline = pipeline_on(sample, backend)
    plan = pipeline.plan(seeds_for(pipeline.experiment).seeds, limit=2, seed=1)
    skips = Skips()
    events = []
    for event in pipeline.run(plan.jobs, parallel=2, skips=skips):
        events.append(event)
        if isinstance(event, TokenChunk) and event.job == plan.jobs[0] and event.n_tokens == 2:
            skips.skip(0)
    skipped = [e for e in events if isinstance(e, JobSkipped)]
    assert [(e.job, e.phase) for e in skipped] == [(plan.jobs[0], "generate")]
    summary = events[-1]
    assert isinstance(summary, RunFinished) and not summary.cancelled
    assert (summary.conversations, summary.restyled, summary.skipped) == (1, 1, 1)
    saved = [read_conversation(p) for p in (sample / "conversations").glob("*.json")]
    assert [r.tweet_id for r in saved] == [plan.jobs[1].seed.tweet_id]


def test_a_job_skipped_before_it_starts_never_reaches_the_backend(sample: Path) -> None:
    backend = ScriptedBackend()
    pipeline = pipeline_on(sample, backend)
    plan = pipeline.plan(seeds_for(pipeline.experiment).seeds, limit=2, seed=1)
    skips = Skips()
    skips.skip(1)
    events = list(pipeline.run(plan.jobs, restyle=False, skips=skips))
    assert len(backend.prompts) == 1 and events[-1].skipped == 1 and events[-1].conversations == 1


def test_prompt_reading_progress_is_passed_on(sample: Path) -> None:
    backend = ScriptedBatchBackend(default=Script(prompt_steps=2))
    pipeline = pipeline_on(sample, backend)
    plan = pipeline.plan(seeds_for(pipeline.experiment).seeds, limit=1, seed=1)
    events = list(pipeline.run(plan.jobs, restyle=False))
    progress = [e for e in events if isinstance(e, PromptProgress)]
    total = backend.count_tokens(backend.prompts[0])
    assert [(p.done, p.total) for p in progress] == [(0, total), (total // 2, total)]
    names = [type(e).__name__ for e in events]
    assert names.index("JobStarted") < names.index("PromptProgress") < names.index("TokenChunk")
