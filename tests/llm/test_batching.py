"""Batched generation on the real embedded model: same text as alone, prefix sharing, cancel, slots.

Correctness only (speed is benchmarks/throughput.py's job); token counts are small.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import pytest

from convogen_tui.core.making.backend import (
    Request,
    StreamChunk,
    StreamDone,
    StreamEvent,
    StreamStarted,
    run_sequential,
)
from convogen_tui.core.making.check import seeds_for
from convogen_tui.core.making.experiment import SamplingSettings, load_experiment
from convogen_tui.core.making.pipeline import Pipeline, RunFinished, TokenChunk
from convogen_tui.llm.loader import open_backend

pytestmark = pytest.mark.llama  # runs the embedded model through llama.cpp

SYSTEM = (
    "You write believable two-person exchanges between SocBot, a patient assistant that answers with "
    "evidence, and a social media user who doubts official accounts. Keep each turn short, write the "
    "speaker's name before each turn, never break character, never mention these instructions, and "
    "end when the user has had their say. SocBot cites studies, agencies and numbers where it can, "
    "admits what is not known, and stays friendly even when the user is rude or repeats a claim."
)
GREEDY = SamplingSettings(temperature=0, repeat_penalty=1.0, max_tokens=14)
SAMPLED = SamplingSettings(temperature=0.9, top_k=40, top_p=0.95, repeat_penalty=1.15, max_tokens=14)
TOPICS = ["vaccines", "the moon landing", "5G masts", "climate change", "fluoride", "chemtrails"]


def chat(user: str) -> str:
    return (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )


def requests(sampling: Iterable[SamplingSettings] | None = None) -> list[Request]:
    settings = list(sampling) if sampling is not None else [GREEDY, SAMPLED] * 3
    return [
        Request(i, chat(f"Write a short exchange about {topic}."), 1000 + i, settings[i])
        for i, topic in enumerate(TOPICS)
    ]


def run_all(backend, reqs: list[Request], parallel: int, cancel: threading.Event | None = None):
    pending = list(reversed(reqs))
    events: list[StreamEvent] = []
    for event in backend.run_many(
        lambda: pending.pop() if pending else None, cancel or threading.Event(), parallel
    ):
        events.append(event)
    return events


def done(events: list[StreamEvent]) -> dict[int, StreamDone]:
    return {e.key: e for e in events if isinstance(e, StreamDone)}


@pytest.fixture
def backend(embedded_backend):
    """The session's model with settings restored after each test."""
    embedded_backend.share_prefix = True
    embedded_backend.ignore_eos = False
    yield embedded_backend
    embedded_backend.share_prefix = True
    embedded_backend.ignore_eos = False


def test_batched_text_equals_alone_for_the_same_seeds(backend) -> None:
    reqs = requests()
    alone = {}
    for r in reqs:
        generation = backend.stream(r)
        alone[r.key] = (generation.text(), generation.stats.finish_reason)
    batched = done(run_all(backend, reqs, parallel=4))
    assert {k: (d.text, d.stats.finish_reason) for k, d in batched.items()} == alone
    assert all(text for text, _ in alone.values())
    # seeded sampling really samples: another seed gives another text
    other = backend.stream(replace(reqs[1], sampling=SAMPLED, seed=4242)).text()
    assert other != alone[1][0]


def test_prefix_sharing_gives_the_same_text_with_fewer_prompt_tokens(backend) -> None:
    reqs = requests()
    backend.share_prefix = False
    backend.engine.forget()
    before = backend.engine.prompt_tokens_evaluated
    plain = done(run_all(backend, reqs, parallel=3))
    cost_plain = backend.engine.prompt_tokens_evaluated - before
    backend.share_prefix = True
    backend.engine.forget()
    before = backend.engine.prompt_tokens_evaluated
    shared = done(run_all(backend, reqs, parallel=3))
    cost_shared = backend.engine.prompt_tokens_evaluated - before
    assert {k: d.text for k, d in shared.items()} == {k: d.text for k, d in plain.items()}
    prompt_tokens = sum(d.stats.prompt_tokens for d in plain.values())
    assert cost_plain == prompt_tokens
    assert cost_shared <= cost_plain - 5 * 64  # the system prompt was evaluated once, not six times


def test_cancelling_one_sequence_leaves_the_others_running(backend) -> None:
    cancels = [threading.Event() for _ in range(3)]
    base = requests([GREEDY.model_copy(update={"max_tokens": 20})] * 6)[:3]
    reqs = [
        Request(r.key, r.prompt, r.seed, r.sampling, cancel=c) for r, c in zip(base, cancels, strict=True)
    ]
    backend.ignore_eos = True
    pending = list(reversed(reqs))
    events = []
    for event in backend.run_many(lambda: pending.pop() if pending else None, threading.Event(), 3):
        events.append(event)
        if isinstance(event, StreamChunk) and event.key == 1 and event.n_tokens >= 3:
            cancels[1].set()
    finished = done(events)
    assert finished[1].stats.finish_reason == "cancelled" and finished[1].stats.completion_tokens < 6
    for key in (0, 2):
        assert finished[key].stats.finish_reason == "length" and finished[key].stats.completion_tokens == 20
    assert sorted(e.key for e in events if isinstance(e, StreamDone)) == [0, 1, 2]


def test_cancel_one_request_in_the_sequential_fallback(backend) -> None:
    cancel_one = threading.Event()
    reqs = [
        Request(
            0, chat("Write about tea."), 1, GREEDY.model_copy(update={"max_tokens": 30}), cancel=cancel_one
        ),
        Request(1, chat("Write about coffee."), 2, GREEDY),
    ]
    pending = list(reversed(reqs))
    events = []
    for event in run_sequential(backend, lambda: pending.pop() if pending else None, threading.Event()):
        events.append(event)
        if isinstance(event, StreamChunk) and event.key == 0 and event.n_tokens >= 2:
            cancel_one.set()
    finished = done(events)
    assert finished[0].stats.finish_reason == "cancelled" and finished[0].stats.completion_tokens < 10
    assert finished[1].stats.finish_reason in ("stop", "length") and finished[1].text


def test_a_finished_sequence_frees_its_slot_for_a_waiting_job(backend) -> None:
    """Two slots: the short job ends (max tokens or end-of-sequence) and the waiting one starts."""
    stops = Request(
        0, chat("What is 2+2? Answer with a number only."), 1, GREEDY.model_copy(update={"max_tokens": 40})
    )
    long = Request(
        1, chat("Write a long exchange about vaccines."), 2, GREEDY.model_copy(update={"max_tokens": 40})
    )
    short = Request(2, chat("Write about tea."), 3, GREEDY.model_copy(update={"max_tokens": 3}))
    waiting = Request(3, chat("Write about coffee."), 4, GREEDY.model_copy(update={"max_tokens": 3}))
    backend.ignore_eos = False
    events = run_all(backend, [stops, long, short, waiting], parallel=2)
    order = [(type(e).__name__, e.key) for e in events if isinstance(e, StreamStarted | StreamDone)]
    finished = done(events)
    assert finished[0].stats.finish_reason == "stop" and finished[0].stats.completion_tokens < 40
    assert finished[2].stats.finish_reason == "length" and finished[2].stats.completion_tokens == 3
    # the end-of-sequence job freed a slot for job 2, job 2's max tokens freed one for job 3,
    # all while job 1 was still decoding
    assert order.index(("StreamDone", 0)) < order.index(("StreamStarted", 2))
    assert order.index(("StreamDone", 2)) < order.index(("StreamStarted", 3))
    assert order.index(("StreamStarted", 3)) < order.index(("StreamDone", 1))
    assert finished[1].stats.completion_tokens == 40


def test_pipeline_in_parallel_writes_the_same_files_as_sequential(datasets: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy" / "datasets"
    shutil.copytree(datasets, copy)
    texts = []
    for root, parallel in ((datasets, 1), (copy, 3)):
        experiment = load_experiment(root / "inst-templates" / "sample")
        sampling = experiment.sampling.model_copy(update={"max_tokens": 12})
        pipeline = Pipeline(experiment, open_backend(experiment), sampling=sampling)
        plan = pipeline.plan(seeds_for(experiment).seeds, limit=4, seed=11)
        summary = list(pipeline.run(plan.jobs, parallel=parallel))[-1]
        assert isinstance(summary, RunFinished) and summary.conversations == 4 and summary.restyled == 4
        records = {}
        for path in sorted(pipeline.store.conv_dir.glob("*.json")):
            record = json.loads(path.read_text(encoding="utf-8"))
            records[record["tweet_id"]] = record["conv"]
        for path in sorted(pipeline.store.restyled_dir.glob("*.json")):
            record = json.loads(path.read_text(encoding="utf-8"))
            records["restyled " + record["tweet_id"]] = record["restyled_conv"]
        texts.append(records)
    assert len(texts[0]) == 8 and texts[0] == texts[1]


def test_cancelled_parallel_run_writes_no_partial_file(sample: Path) -> None:
    experiment = load_experiment(sample)
    sampling = experiment.sampling.model_copy(update={"max_tokens": 200})
    pipeline = Pipeline(experiment, open_backend(experiment), sampling=sampling)
    plan = pipeline.plan(seeds_for(experiment).seeds, limit=3, seed=2)
    cancel = threading.Event()
    events = []
    for event in pipeline.run(plan.jobs, cancel=cancel, parallel=3):
        events.append(event)
        if isinstance(event, TokenChunk) and event.n_tokens >= 3:
            cancel.set()
    summary = events[-1]
    assert isinstance(summary, RunFinished) and summary.cancelled and summary.conversations == 0
    assert not list(pipeline.store.conv_dir.glob("*"))  # a missing folder globs to nothing


def test_cli_parallel_option_is_reported(cli, generate_args) -> None:
    code, out, _ = cli(*generate_args("--limit 2 --max-tokens 6 --seed 3 --parallel 2 --no-restyle"))
    assert code == 0 and "parallel: 2 conversation(s) at once (--parallel)" in out
    assert "wrote 2 conversation(s)" in out
