"""A run sized to its jobs: stream token estimates, the KV reservation, --parallel auto|N, phase overlap.

Scripted backend only (milliseconds); the same on llama.cpp is in test_kv_sizing.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from convogen_tui.core.making.backend import choose_parallel
from convogen_tui.core.making.check import seeds_for
from convogen_tui.core.making.experiment import load_experiment
from convogen_tui.core.making.pipeline import RESTYLE_SLACK, JobFinished, JobStarted, Pipeline
from tests.scripted import Script, ScriptedBackend


def test_stream_tokens_follow_the_prompts_and_max_tokens_not_n_ctx(sample: Path) -> None:
    backend = ScriptedBackend(memory_per_stream=2**20)  # holds a KV cache: sizing applies
    experiment = load_experiment(sample)
    pipeline = Pipeline(
        experiment, backend, sampling=experiment.sampling.model_copy(update={"max_tokens": 50})
    )
    jobs = pipeline.plan(seeds_for(experiment).seeds, personas="all", seed=1).jobs
    longest_prompt = max(backend.count_tokens(pipeline.generation_prompt(j.seed, j.persona)) for j in jobs)

    alone = pipeline.stream_tokens(jobs, restyle=False)
    assert alone == longest_prompt + 50 < experiment.setup.n_ctx
    # a restyle prompt holds the conversation (up to max_tokens) and then writes max_tokens more
    longest_tweet = max((j.seed.tweet for j in jobs), key=len)
    empty_restyle = backend.count_tokens(pipeline.restyle_prompt(longest_tweet, ""))
    with_restyle = pipeline.stream_tokens(jobs, restyle=True)
    assert with_restyle is not None and with_restyle >= empty_restyle + 2 * 50
    assert with_restyle < empty_restyle + 2 * 50 + 64  # a little slack, not the whole context


def test_restyle_only_runs_are_sized_by_their_longest_conversation(sample: Path) -> None:
    texts = [Script("SocBot: hi\nUser: no"), Script(" ".join(f"word{i}" for i in range(300)))]
    backend = ScriptedBackend(texts, memory_per_stream=2**20)
    earlier = pipeline_with_max_tokens(sample, backend, 400)  # written with a larger budget
    jobs = earlier.plan(seeds_for(earlier.experiment).seeds, limit=2, seed=1).jobs
    list(earlier.run(jobs, restyle=False))
    pipeline = pipeline_with_max_tokens(sample, backend, 40)
    restyles = pipeline.restyle_jobs(seed=1)
    longest = max(restyles, key=lambda j: len(j.conv or ""))
    prompt = backend.count_tokens(pipeline.restyle_prompt(longest.seed.tweet, longest.conv or ""))
    assert prompt > 300 and pipeline.stream_tokens(restyles) == prompt + RESTYLE_SLACK + 40


def test_a_backend_without_a_kv_cache_is_not_sized(sample: Path) -> None:
    backend = ScriptedBackend()  # memory_for is None: like a remote server
    pipeline = Pipeline(load_experiment(sample), backend)
    jobs = pipeline.plan(seeds_for(pipeline.experiment).seeds, limit=2, seed=1).jobs
    assert pipeline.stream_tokens(jobs) is None
    assert backend.prompts == []  # nothing was asked of it


def test_the_run_reserves_its_streams_before_the_first_request(sample: Path) -> None:
    asked_before: list[int] = []

    class Recording(ScriptedBackend):
        def reserve(self, parallel: int, stream_tokens: int | None = None) -> None:
            asked_before.append(len(self.prompts))
            super().reserve(parallel, stream_tokens)

    backend = Recording(slots=4, memory_per_stream=2**20)
    pipeline = pipeline_with_max_tokens(sample, backend, 40)
    jobs = pipeline.plan(seeds_for(pipeline.experiment).seeds, limit=3, seed=1).jobs
    events = list(pipeline.run(jobs, parallel=8))
    assert backend.reserved == [(3, pipeline.stream_tokens(jobs, restyle=True))]  # 8 asked, 3 jobs
    assert asked_before == [0]
    assert sum(isinstance(e, JobFinished) for e in events) == 6


def test_restyles_join_the_running_batch_as_soon_as_their_conversation_is_saved(sample: Path) -> None:
    """Two slots, three jobs: job 0 ends first and its restyle runs beside job 1, ahead of job 2."""
    short, long = Script("SocBot: hi\nUser: no"), Script(" ".join(f"w{i}" for i in range(40)))
    backend = ScriptedBackend([short, long], default=Script("SocBot: a\nUser: b"), slots=2)
    pipeline = Pipeline(load_experiment(sample), backend)
    jobs = pipeline.plan(seeds_for(pipeline.experiment).seeds, limit=3, seed=1).jobs
    ids = [j.seed.tweet_id for j in jobs]
    order = [
        (type(e).__name__, e.phase, ids.index(e.job.seed.tweet_id))
        for e in pipeline.run(jobs, parallel=2)
        if isinstance(e, JobStarted | JobFinished)
    ]
    restyle_0 = order.index(("JobStarted", "restyle", 0))
    assert order.index(("JobFinished", "generate", 0)) < restyle_0
    assert restyle_0 < order.index(("JobFinished", "generate", 1))  # overlaps the long generation
    assert restyle_0 < order.index(("JobStarted", "generate", 2))  # and goes ahead of new jobs
    assert backend.max_running == 2


def test_auto_passes_the_stream_size_to_the_backend_and_memory_check(sample: Path) -> None:
    seen: list[tuple[str, int | None]] = []

    class Sized(ScriptedBackend):
        def auto_parallel(self, n_jobs: int, stream_tokens: int | None = None) -> tuple[int, str]:
            seen.append(("auto", stream_tokens))
            return 6, "sized"

        def memory_for(self, parallel: int, stream_tokens: int | None = None) -> int | None:
            seen.append(("memory", stream_tokens))
            return parallel * (stream_tokens or 0) * 1000

    backend = Sized(memory_free=10**9)
    choice = choose_parallel(backend, None, n_jobs=20, stream_tokens=700)
    assert (choice.n, choice.reason, choice.memory_bytes) == (6, "sized", 6 * 700 * 1000)
    assert ("auto", 700) in seen and ("memory", 700) in seen
    lowered = choose_parallel(backend, 4000, n_jobs=5000, stream_tokens=700)
    assert lowered.n == 1428 and "lowered to 1428" in lowered.reason  # 10**9 // (700 * 1000)


@pytest.mark.parametrize("value", ["0", "-2", "many", "1.5"])
def test_parallel_must_be_auto_or_a_positive_number(cli, datasets: Path, value: str) -> None:
    with pytest.raises(SystemExit) as info:
        cli("generate", "sample", "--root", datasets, "--parallel", value)
    assert info.value.code == 2


def pipeline_with_max_tokens(sample: Path, backend: ScriptedBackend, max_tokens: int) -> Pipeline:
    experiment = load_experiment(sample)
    return Pipeline(
        experiment, backend, sampling=experiment.sampling.model_copy(update={"max_tokens": max_tokens})
    )
