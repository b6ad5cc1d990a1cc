"""One contract, three backends: the scripted one, llama.cpp on the embedded model (marked ``llama``)
and the OpenAI-compatible client against a server on 127.0.0.1 (tests/fake_openai.py, marked
``process``) go through the same cases: streaming, max_tokens, cancel, failure and batching.

Each case drives ``Backend.run_many``, the entry the pipeline uses for every run; a backend is held
to what the pipeline counts on, not to how it gets there.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import get_args

import pytest

from convogen_tui.core.making import backend as contract
from convogen_tui.core.making.experiment import BackendSettings, SamplingSettings
from convogen_tui.llm.loader import BACKENDS
from tests.fake_openai import FakeOpenAI, Reply, Seen, running
from tests.scripted import Script, ScriptedBatchBackend

FAIL = "FAIL-THIS-ONE"  # a prompt each backend fails (scripted: on cue; server: HTTP 400; llama: too long)
LONG = "Write a long story, at least three paragraphs, about"
ENDLESS = 10**9  # max_tokens of a request that runs until it is cancelled


def chat(user: str) -> str:
    """ChatML, the embedded model's own format (the others take any text)."""
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


@dataclass
class Harness:
    name: str
    backend: contract.Backend
    failing: str  # a prompt this backend fails, alone

    def request(
        self, key: int, topic: str, max_tokens: int = 8, temperature: float = 0.0
    ) -> contract.Request:
        sampling = SamplingSettings(temperature=temperature, repeat_penalty=1.0, max_tokens=max_tokens)
        prompt = self.failing if topic == FAIL else chat(f"{LONG} {topic}.")
        return contract.Request(key, prompt, 1000 + key, sampling, cancel=threading.Event())


def _scripted_answer(prompt: str) -> Script:
    if FAIL in prompt:
        return Script(fail="the script fails here", fail_after=1)
    topic = prompt.split(LONG)[-1].split("<|im_end|>")[0]
    return Script(" ".join(f"SocBot: word {i} about{topic}" for i in range(60)))


def _server_answer(seen: Seen) -> Reply:
    body = json.dumps(seen.body)
    if FAIL in body:
        return Reply(status=400, error_body="prompt rejected")
    # words until max_tokens, or without end (until the client hangs up) for a request asking so many
    # tokens that only a cancel can end it: the client reads on a thread of its own
    return Reply(endless=True, honour_max_tokens=seen.max_tokens < ENDLESS)


@pytest.fixture(
    params=[
        "scripted",
        pytest.param("llama", marks=pytest.mark.llama),
        pytest.param("openai", marks=pytest.mark.process),
    ]
)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    if request.param == "scripted":
        yield Harness("scripted", ScriptedBatchBackend(default=_scripted_answer, slots=4), FAIL)
    elif request.param == "llama":
        backend = request.getfixturevalue("embedded_backend")
        yield Harness("llama", backend, chat(f"{FAIL} " + "word " * (backend.info.n_ctx + 100)))
    else:
        from convogen_tui.llm.openai_compat import OpenAIBackend

        with running(FakeOpenAI(respond=_server_answer)) as server:
            backend = OpenAIBackend([server.url], concurrency=4, api="completions", max_attempts=1)
            try:
                yield Harness("openai", backend, FAIL)
            finally:
                backend.close()


def run(
    backend: contract.Backend, requests: list[contract.Request], parallel: int, on_event=None
) -> list[contract.StreamEvent]:  # type: ignore[no-untyped-def]
    pending = list(reversed(requests))
    events: list[contract.StreamEvent] = []
    for event in backend.run_many(lambda: pending.pop() if pending else None, threading.Event(), parallel):
        events.append(event)
        if on_event is not None:
            on_event(event)
    return events


def endings(events: list[contract.StreamEvent]) -> dict[int, contract.StreamDone | contract.StreamFailed]:
    """Each request's one ending; a second ending for a key fails the test."""
    ends: dict[int, contract.StreamDone | contract.StreamFailed] = {}
    for event in events:
        if isinstance(event, contract.StreamDone | contract.StreamFailed):
            assert event.key not in ends, f"request {event.key} ended twice"
            ends[event.key] = event
    return ends


def test_streaming_starts_then_chunks_then_one_done_with_their_text(harness: Harness) -> None:
    events = run(harness.backend, [harness.request(0, "vaccines")], parallel=1)
    assert isinstance(events[0], contract.StreamStarted) and events[0].key == 0
    chunks = [e for e in events if isinstance(e, contract.StreamChunk)]
    counts = [c.n_tokens for c in chunks]
    assert chunks and counts == sorted(counts) and counts[0] >= 1
    (done,) = endings(events).values()
    assert isinstance(done, contract.StreamDone)
    assert done.text == "".join(c.text for c in chunks) and done.text.strip()
    assert done.stats.completion_tokens == counts[-1]
    assert done.stats.finish_reason in ("stop", "length")


def test_max_tokens_ends_a_long_answer_as_length(harness: Harness) -> None:
    events = run(harness.backend, [harness.request(0, "the moon landing", max_tokens=4)], parallel=1)
    (done,) = endings(events).values()
    assert isinstance(done, contract.StreamDone)
    assert done.stats.completion_tokens == 4 and done.stats.finish_reason == "length"


def test_cancel_ends_one_request_as_cancelled_and_the_other_goes_on(harness: Harness) -> None:
    # a backend pulled by its caller stops at once; the server's client reads on its own thread, so
    # its request gets a budget only the cancel can end (the stream is endless)
    budget = ENDLESS if harness.name == "openai" else 400
    stopped = harness.request(0, "5G masts", max_tokens=budget)
    other = harness.request(1, "fluoride", max_tokens=6)

    def cancel_after_first_chunk(event: contract.StreamEvent) -> None:
        if isinstance(event, contract.StreamChunk) and event.key == 0:
            assert stopped.cancel is not None
            stopped.cancel.set()

    ends = endings(run(harness.backend, [stopped, other], parallel=2, on_event=cancel_after_first_chunk))
    first, second = ends[0], ends[1]
    assert isinstance(first, contract.StreamDone) and first.stats.finish_reason == "cancelled"
    assert first.stats.completion_tokens < budget
    assert isinstance(second, contract.StreamDone) and second.stats.finish_reason in ("stop", "length")


def test_a_failure_ends_its_request_alone(harness: Harness) -> None:
    ends = endings(run(harness.backend, [harness.request(0, FAIL), harness.request(1, "chemtrails")], 2))
    failed, fine = ends[0], ends[1]
    assert isinstance(failed, contract.StreamFailed) and failed.message.strip()
    assert isinstance(fine, contract.StreamDone) and fine.text.strip()


def test_batching_gives_each_request_the_text_it_gets_alone(harness: Harness) -> None:
    topics = ["vaccines", "climate change", "fluoride"]
    alone = {}
    for key, topic in enumerate(topics):
        (done,) = endings(run(harness.backend, [harness.request(key, topic, max_tokens=6)], 1)).values()
        assert isinstance(done, contract.StreamDone)
        alone[key] = done.text
    together = endings(
        run(harness.backend, [harness.request(k, t, max_tokens=6) for k, t in enumerate(topics)], 3)
    )
    assert sorted(together) == [0, 1, 2]
    assert {k: e.text for k, e in together.items() if isinstance(e, contract.StreamDone)} == alone


def test_every_backend_kind_of_the_setup_has_an_opener() -> None:
    assert list(BACKENDS) == list(get_args(BackendSettings.model_fields["kind"].annotation))
