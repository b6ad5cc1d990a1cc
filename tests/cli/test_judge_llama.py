"""The judge pass on real models: the embedded model under the judge's grammar (in this process,
batched) and through llama_cpp.server on 127.0.0.1 (the OpenAI backend sends the grammar).

Even a 135M model writes a valid answer every time: the grammar allows nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convogen_tui.core.keeping.records import ConversationRecord, PersonaNames, RestyledRecord
from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.core.making.experiment import load_experiment
from convogen_tui.core.making.pipeline import Pipeline, RunFinished
from tests.core.judging.test_judge import CRITERIA

pytestmark = pytest.mark.llama


def assert_valid_judgments(expt: Path, n: int, constraint: str) -> None:
    files = sorted((expt / "judgments").glob("*.json"))
    assert len(files) == n
    for path in files:
        judgment = json.loads(path.read_text(encoding="utf-8"))
        assert "verdict" not in judgment, judgment.get("reason")
        assert list(judgment["scores"]) == CRITERIA
        assert all(isinstance(v, int) and 1 <= v <= 5 for v in judgment["scores"].values())
        assert isinstance(judgment["rationale"], str) and len(judgment["rationale"]) <= 280
        provenance = judgment["provenance"]
        assert provenance["constraint"] == constraint and provenance["attempts"] == 1
        assert provenance["model"]["fingerprint"] or provenance["model"]["endpoint"]


def test_generate_judge_on_the_embedded_model_writes_valid_judgments(
    sample: Path, datasets: Path, cli
) -> None:
    code, out, err = cli(
        "generate", "sample", "--root", datasets, "--limit", "2", "--judge", "--max-tokens", "48",
        "--no-constrain", "--seed", "5", "--parallel", "2",
    )  # fmt: skip
    assert code == 0, err
    assert "judged 2 pair(s)" in out and "judge-failed" not in out
    assert_valid_judgments(sample, 2, "grammar")
    code, out, _ = cli("judge", "sample", "--root", datasets)
    assert code == 0 and "nothing to judge: 2 pair(s) already judged" in out


def add_pairs(expt: Path, n: int) -> None:
    store = ConversationStore(expt)
    for i in range(n):
        record = ConversationRecord(
            tweet_id=str(i),
            tweet="They put fluoride in the water to keep us docile.",
            disposition="Cynical.",
            motivation="Distrust.",
            conv="SocBot: The studies are public.\nUser: Who paid for them?",
            persona=PersonaNames(motivation="distrust", disposition="cynical"),
        )
        conv_id = store.save_conversation(record, f"pair-{i}")
        store.save_restyled(
            conv_id, RestyledRecord(tweet_id=str(i), restyled_conv="SocBot: studies r public\nUser: who paid")
        )


@pytest.mark.process
def test_the_openai_backend_sends_the_judge_grammar_to_a_llama_cpp_server(sample: Path) -> None:
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")
    from convogen_tui.llm.openai_compat import OpenAIBackend
    from tests.llm.test_openai_backend import Server

    add_pairs(sample, 2)
    server = Server()
    try:
        server.wait_ready()
        backend = OpenAIBackend([server.url], concurrency=1, api="completions")
        pipeline = Pipeline(load_experiment(sample), backend)
        plan = pipeline.judge_plan(seed=2)
        assert len(plan.jobs) == 2
        result = list(pipeline.run(plan.jobs, restyle=False))[-1]
        assert isinstance(result, RunFinished)
        assert (result.judged, result.judge_failed, result.failed) == (2, 0, 0)
        assert_valid_judgments(sample, 2, "grammar")
        backend.close()
    finally:
        server.kill()
