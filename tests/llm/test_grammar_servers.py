"""Which field a served run's grammar travels in, per server kind, and what happens when it cannot.

vLLM needs a GPU this machine lacks, so it is played by the loopback fake of tests/fake_openai.py
(its /v1/models and /version answers as vLLM gives them); the llama.cpp server is tested for real
in tests/llm/test_grammar_engine.py.
"""

from __future__ import annotations

import threading

import pytest

from convogen_tui.core.making.backend import Constraint, Request, StreamDone, StreamFailed
from convogen_tui.core.making.experiment import SamplingSettings
from convogen_tui.llm.openai_compat import OpenAIBackend
from tests.fake_openai import FakeOpenAI, Reply, running

pytestmark = pytest.mark.process

DIALOG = Constraint("dialog", 'root ::= "SocBot: " [a-z]+ "\\nUser: " [a-z]+\n')


def _one(backend: OpenAIBackend, constraint: Constraint | None = DIALOG) -> StreamDone | StreamFailed:
    pending = [Request(1, "prompt", 1, SamplingSettings(max_tokens=40), constraint=constraint)]
    ends = [
        e
        for e in backend.run_many(lambda: pending.pop() if pending else None, threading.Event(), 1)
        if isinstance(e, StreamDone | StreamFailed)
    ]
    assert len(ends) == 1
    return ends[0]


@pytest.mark.parametrize(
    ("version", "field"),
    [("0.11.0", "structured_outputs"), ("0.8.5", "guided_grammar")],
)
def test_vllm_gets_the_grammar_in_its_own_field(version: str, field: str):
    with running(FakeOpenAI(owned_by="vllm", version=version)) as server:
        backend = OpenAIBackend([server.url], backoff_s=0.01)
        assert backend.constraint_support() == "grammar"
        done = _one(backend)
        assert isinstance(done, StreamDone) and done.stats.constrained
        body = server.completions()[0].body
        sent = body["structured_outputs"]["grammar"] if field == "structured_outputs" else body[field]
        assert sent == DIALOG.gbnf
        assert "grammar" not in body
        backend.close()


def test_a_server_of_unknown_kind_is_sent_no_grammar():
    with running(FakeOpenAI()) as server:
        backend = OpenAIBackend([server.url], backoff_s=0.01)
        assert backend.constraint_support() == ""
        done = _one(backend)
        assert isinstance(done, StreamDone) and not done.stats.constrained
        body = server.completions()[0].body
        assert not {"grammar", "structured_outputs", "guided_grammar"} & set(body)
        backend.close()


def test_a_server_that_refuses_the_grammar_runs_on_without_it():
    def respond(seen):
        if "grammar" in seen.body:
            return Reply(status=400, error_body='{"error": "failed to parse grammar"}')
        return Reply()

    with running(FakeOpenAI(respond=respond, owned_by="llamacpp")) as server:
        backend = OpenAIBackend([server.url], backoff_s=0.01)
        assert backend.constraint_support() == "grammar"
        first = _one(backend)
        assert isinstance(first, StreamDone) and first.text and not first.stats.constrained
        assert any("runs unconstrained from now on" in w for w in backend.warnings)
        second = _one(backend)
        assert isinstance(second, StreamDone)
        assert [("grammar" in s.body) for s in server.completions()] == [True, False, False]
        backend.close()
