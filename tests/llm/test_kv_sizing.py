"""The KV cache sized to the run on the real embedded model: streams that follow the prompts, growth,
--parallel auto, compaction at the tail, and prompts of new requests packed together (the GPU path).

Correctness only: the text must not change (same seed, same text alone or batched on CPU).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from convogen_tui.core.making.backend import Request, StreamDone, StreamEvent, StreamStarted
from convogen_tui.core.making.experiment import SamplingSettings
from convogen_tui.llm.embedded import embedded_model_path
from convogen_tui.llm.llama_cpp import LlamaCppBackend, load_llama
from convogen_tui.llm.llama_engine import cells_for

pytestmark = pytest.mark.llama  # runs the embedded model through llama.cpp

GREEDY = SamplingSettings(temperature=0, repeat_penalty=1.0, max_tokens=12)
SAMPLED = SamplingSettings(temperature=0.9, top_k=40, top_p=0.95, repeat_penalty=1.15, max_tokens=12)


def chat(user: str) -> str:
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture
def backend():
    """The embedded model as the CLI loads it (the one process-wide copy); settings put back."""
    loaded = load_llama(embedded_model_path(), n_ctx=4096)
    engine = loaded.engine
    chunk = engine.chunk
    loaded.ignore_eos = False
    yield loaded
    engine.chunk = chunk
    engine.compact = True
    loaded.ignore_eos = False


def run_all(backend, reqs: list[Request], parallel: int) -> list[StreamEvent]:
    pending = list(reversed(reqs))
    return list(backend.run_many(lambda: pending.pop() if pending else None, threading.Event(), parallel))


def texts(events: list[StreamEvent]) -> dict[int, str]:
    return {e.key: e.text for e in events if isinstance(e, StreamDone)}


def alone(backend, reqs: list[Request]) -> dict[int, str]:
    return {r.key: backend.stream(r).text() for r in reqs}


def test_generate_prints_a_kv_cache_sized_by_prompt_and_max_tokens(cli, datasets: Path) -> None:
    code, out, _ = cli(
        "generate", "sample", "--root", datasets, "--limit", "2", "--max-tokens", "6", "--seed", "3",
        "--parallel", "2", "--no-restyle",
    )  # fmt: skip
    assert code == 0 and "wrote 2 conversation(s)" in out
    backend = load_llama(embedded_model_path(), n_ctx=4096)  # the model the command used
    kv_mib = float(re.search(r"KV cache ([\d,.]+) MiB", out).group(1).replace(",", ""))
    per_token = backend.kv_bytes_per_token()
    # two streams of prompt (~300 tokens) + 6, rounded up to 512 cells: not 2 x n_ctx (4096)
    assert kv_mib == round(2 * 512 * per_token / 2**20)
    assert kv_mib < 2 * 4096 * per_token / 2**20 / 4
    engine = backend.engine
    assert (engine.capacity, engine.cells) == (2, 512)


def test_parallel_auto_is_the_default_and_says_why(cli, datasets: Path) -> None:
    code, out, _ = cli(
        "generate", "sample", "--root", datasets, "--limit", "3", "--max-tokens", "4", "--no-restyle",
    )  # fmt: skip
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("parallel:"))
    assert line.startswith("parallel: 3 conversation(s) at once (auto: the most that pays on a CPU")
    assert "only 3 job(s)" in line and "KV cache" in line
    code, out, _ = cli(
        "generate", "sample", "--root", datasets, "--limit", "4", "--max-tokens", "4", "--no-restyle",
        "--parallel", "auto", "--again",
    )  # fmt: skip
    assert code == 0 and "parallel: 4 conversation(s) at once (auto:" in out


def test_auto_takes_the_most_streams_that_fit_free_memory() -> None:
    class SmallMemory(LlamaCppBackend):
        """The embedded model on a machine with 100 MiB free (the only thing changed)."""

        def memory_available(self) -> int | None:
            return 100 * 2**20

    small = SmallMemory(embedded_model_path(), n_ctx=4096)
    try:
        per_stream = small.memory_for(1, 1000)  # 1,024 cells
        n, reason = small.auto_parallel(50, 1000)
        assert n == int(100 * 2**20 * 0.9 // per_stream) < 16
        assert "the most whose KV cache fits (1,024 cells" in reason and "16 would pay on a CPU" in reason
        n, reason = small.auto_parallel(50, 100)  # shorter jobs: more streams fit, up to what pays
        assert n == 16 and reason.startswith("auto: the most that pays on a CPU; 256 KV cells each")
    finally:
        small.close()


def test_a_request_longer_than_the_streams_waits_then_they_grow(backend) -> None:
    short = Request(0, chat("Say hello."), 1, GREEDY)
    story = "The cat sat on the mat and watched the birds. " * 25
    sixteen = SAMPLED.model_copy(update={"max_tokens": 16})
    long = Request(1, chat(f"Go on with this story: {story}"), 2, sixteen)
    assert backend.count_tokens(long.prompt) + 16 > 256
    expected = alone(backend, [short, long])
    backend.reserve(2, 64)  # 256 cells: the long request (prompt + 16) does not fit
    assert backend.engine.cells == 256
    grows = backend.engine.counters.grows
    events = run_all(backend, [short, long], parallel=2)
    assert texts(events) == expected
    assert backend.engine.counters.grows == grows + 1
    assert backend.engine.cells == cells_for(backend.count_tokens(long.prompt) + 16, 4096) == 512
    order = [(type(e).__name__, e.key) for e in events if isinstance(e, StreamStarted | StreamDone)]
    assert order.index(("StreamDone", 0)) < order.index(("StreamStarted", 1))  # it waited


def test_a_waiting_request_skipped_ends_without_growing_the_streams(backend) -> None:
    skip = threading.Event()
    first = Request(0, chat("Say hello."), 1, GREEDY)
    story = "The cat sat on the mat and watched the birds. " * 25
    waiting = Request(1, chat(f"Go on with this story: {story}"), 2, GREEDY, cancel=skip)
    backend.reserve(2, 64)
    grows = backend.engine.counters.grows
    pending = [waiting, first]
    events = []
    for event in backend.run_many(lambda: pending.pop() if pending else None, threading.Event(), 2):
        events.append(event)
        if isinstance(event, StreamStarted) and event.key == 0:
            skip.set()  # the long one is waiting for longer streams: skip it
    done = {e.key: e for e in events if isinstance(e, StreamDone)}
    assert done[1].stats.finish_reason == "cancelled" and done[1].text == ""
    assert done[0].stats.finish_reason in ("stop", "length") and done[0].text
    assert backend.engine.counters.grows == grows and backend.engine.cells == 256


def test_the_tail_is_compacted_without_changing_the_text(backend) -> None:
    """Three streams; the middle one ends first and nothing waits: the last moves into its stream."""
    reqs = [
        Request(0, chat("Write about tea."), 10, SAMPLED.model_copy(update={"max_tokens": 24})),
        Request(1, chat("Write about coffee."), 11, SAMPLED.model_copy(update={"max_tokens": 2})),
        Request(2, chat("Write about cocoa."), 12, SAMPLED.model_copy(update={"max_tokens": 24})),
    ]
    backend.ignore_eos = True
    expected = alone(backend, reqs)
    moved = backend.engine.counters.compactions
    steps, sequences = backend.engine.counters.steps, backend.engine.counters.step_sequences
    assert texts(run_all(backend, reqs, parallel=3)) == expected
    assert backend.engine.counters.compactions == moved + 1
    counters = backend.engine.counters
    assert (counters.steps - steps, counters.step_sequences - sequences) == (23, 2 * 23 + 1)


def test_packed_prompts_of_new_requests_start_each_answer_from_its_own_prompt(backend) -> None:
    """The GPU path (chunk 1): new requests' prompts go through llama_decode together; each
    sequence's first token comes from its own last prompt token."""
    backend.engine.chunk = 1
    greedy = GREEDY.model_copy(update={"max_tokens": 3})
    prompts = [
        "The capital of France is",
        "1, 2, 3, 4, 5, 6, 7,",
        "Monday, Tuesday, Wednesday,",
        "A, B, C, D, E,",
    ]
    reqs = [Request(i, p, 1, greedy) for i, p in enumerate(prompts)]
    backend.engine.forget()
    got = texts(run_all(backend, reqs, parallel=4))
    assert got[0].startswith(" Paris") and got[1].startswith(" 8") and got[2].startswith(" and Thursday")
    assert got[3].startswith(" F")
    assert got == alone(backend, reqs)


def test_packed_prompts_evaluate_a_shared_prefix_once(backend) -> None:
    backend.engine.chunk = 1
    system = "You are SocBot. " * 40  # a long shared prefix (~200 tokens)
    reqs = [Request(i, f"{system}\nTopic {i}: {t}", i, GREEDY) for i, t in enumerate(["tea", "rain", "salt"])]
    backend.engine.forget()
    before = backend.engine.prompt_tokens_evaluated
    done = texts(run_all(backend, reqs, parallel=3))
    evaluated = backend.engine.prompt_tokens_evaluated - before
    total = sum(backend.count_tokens(r.prompt) for r in reqs)
    assert len(done) == 3 and all(done.values())
    assert evaluated <= total - 2 * 150  # the prefix once, not three times
