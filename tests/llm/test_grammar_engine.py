"""Grammars inside llama.cpp's batched decode (the embedded model), and sent to a loopback server.

The engine samples a constrained sequence with its own grammar (llm/sampler.py); these tests hold
it to what a user would see: the text obeys the grammar and ends where the grammar ends, the other
sequences of the same batch are untouched, and a grammar that cannot be used fails its request alone.
"""

from __future__ import annotations

import re
import threading

import pytest

from convogen_tui.core.making.backend import Constraint, Request, StreamDone, StreamFailed
from convogen_tui.core.making.experiment import SamplingSettings

pytestmark = pytest.mark.llama

PROMPT = "Write a short dialog between SocBot and User about the weather.\n\n"
# two speakers, lower-case words only: nothing SmolLM2 writes on its own
TINY = Constraint("tiny", 'root ::= "SocBot: " [a-z ]{1,30} [a-z] "\\nUser: " [a-z ]{1,30} [a-z]\n')
TINY_TEXT = re.compile(r"SocBot: [a-z ]{1,30}[a-z]\nUser: [a-z ]{1,30}[a-z]")


def _run(backend, requests: list[Request], parallel: int) -> dict[int, StreamDone | StreamFailed]:
    queue = list(requests)
    ends: dict[int, StreamDone | StreamFailed] = {}
    for event in backend.run_many(lambda: queue.pop(0) if queue else None, threading.Event(), parallel):
        if isinstance(event, StreamDone | StreamFailed):
            ends[event.key] = event
    return ends


def _sampling(max_tokens: int = 64) -> SamplingSettings:
    return SamplingSettings(max_tokens=max_tokens)


def test_llama_cpp_backend_enforces_grammars(embedded_backend):
    assert embedded_backend.constraint_support() == "grammar"


def test_constrained_sequence_obeys_its_grammar_and_stops_where_it_ends(embedded_backend):
    ends = _run(embedded_backend, [Request(1, PROMPT, 7, _sampling(), constraint=TINY)], 1)
    done = ends[1]
    assert isinstance(done, StreamDone)
    assert TINY_TEXT.fullmatch(done.text), done.text
    assert done.stats.finish_reason == "stop"  # the grammar's end forced end-of-generation
    assert done.stats.constrained


def test_a_constrained_sequence_may_run_past_max_tokens_to_close_its_grammar(embedded_backend):
    words = "one two three four five six seven eight nine ten eleven twelve thirteen"
    literal = Constraint("literal", f'root ::= "{words}"\n')
    done = _run(embedded_backend, [Request(1, PROMPT, 3, _sampling(10), constraint=literal)], 1)[1]
    assert isinstance(done, StreamDone)
    assert words.startswith(done.text) and len(done.text) > len("one two three four five six seven")
    assert 10 < done.stats.completion_tokens <= 15  # half as much again, at most
    free = _run(embedded_backend, [Request(1, PROMPT, 3, _sampling(10))], 1)[1]
    assert isinstance(free, StreamDone) and free.stats.completion_tokens == 10


def test_greedy_decoding_under_a_grammar_takes_the_best_allowed_token(embedded_backend):
    greedy = SamplingSettings(temperature=0.0, max_tokens=64)
    ends = _run(embedded_backend, [Request(k, PROMPT, k, greedy, constraint=TINY) for k in (1, 2)], 2)
    first, second = ends[1], ends[2]
    assert isinstance(first, StreamDone) and isinstance(second, StreamDone)
    assert TINY_TEXT.fullmatch(first.text) and first.text == second.text  # seeds do not matter


def test_a_grammar_that_allows_everything_changes_no_token(embedded_backend):
    """The constrained path samples the same chain: where the grammar never says no, same text."""
    anything = Constraint("anything", "root ::= [^\\x00]*\n")
    plain = _run(embedded_backend, [Request(1, PROMPT, 11, _sampling(48))], 1)[1]
    free = _run(embedded_backend, [Request(1, PROMPT, 11, _sampling(48), constraint=anything)], 1)[1]
    assert isinstance(plain, StreamDone) and isinstance(free, StreamDone)
    # the same tokens (a constrained pass may then run on past max_tokens: the grammar ends it)
    assert free.text.startswith(plain.text) and free.stats.constrained


def test_batch_mixes_constrained_and_free_sequences(embedded_backend):
    """Constrained neighbours change nothing for a free sequence (CPU: same text as alone)."""
    alone = _run(embedded_backend, [Request(1, PROMPT, 5, _sampling(40))], 1)[1]
    requests = [
        Request(1, PROMPT, 5, _sampling(40)),
        Request(2, PROMPT, 6, _sampling(), constraint=TINY),
        Request(3, PROMPT + "Begin.\n", 8, _sampling(40)),
        Request(4, PROMPT, 9, _sampling(), constraint=TINY),
    ]
    ends = _run(embedded_backend, requests, 4)
    assert isinstance(alone, StreamDone)
    assert ends[1].text == alone.text  # type: ignore[union-attr]
    for key in (2, 4):
        done = ends[key]
        assert isinstance(done, StreamDone) and TINY_TEXT.fullmatch(done.text), done
        assert done.stats.finish_reason == "stop"
    assert isinstance(ends[3], StreamDone) and not ends[3].stats.constrained


def test_a_grammar_that_does_not_parse_fails_its_request_alone(embedded_backend):
    broken = Constraint("broken", 'root ::= "SocBot: " missing-rule\n')
    requests = [
        Request(1, PROMPT, 5, _sampling(8)),
        Request(2, PROMPT, 6, _sampling(8), constraint=broken),
    ]
    ends = _run(embedded_backend, requests, 2)
    assert isinstance(ends[1], StreamDone) and ends[1].text
    failed = ends[2]
    assert isinstance(failed, StreamFailed)
    assert "cannot parse the broken grammar" in failed.message and "--no-constrain" in failed.message


@pytest.mark.process
def test_openai_backend_sends_the_grammar_to_a_llama_cpp_server():
    """A real llama_cpp.server on 127.0.0.1: the grammar goes in its 'grammar' field and is obeyed."""
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")
    from convogen_tui.llm.openai_compat import OpenAIBackend
    from tests.llm.test_openai_backend import Server

    server = Server()
    try:
        server.wait_ready()
        backend = OpenAIBackend([server.url], concurrency=1, api="completions")
        assert backend.constraint_support() == "grammar"
        requests = [
            Request(1, PROMPT, 3, _sampling(), constraint=TINY),
            Request(2, PROMPT, 4, _sampling(16)),
        ]
        ends = _run(backend, requests, 1)
        done = ends[1]
        assert isinstance(done, StreamDone) and TINY_TEXT.fullmatch(done.text), done
        assert done.stats.constrained
        free = ends[2]
        assert isinstance(free, StreamDone) and not free.stats.constrained
        assert not TINY_TEXT.fullmatch(free.text)
        backend.close()
    finally:
        server.kill()


# the derived grammars, read by llama.cpp's own matcher ----------------------------------------
def _accepts(backend, constraint: Constraint, text: str) -> bool:
    """Whether llama.cpp's grammar takes ``text`` whole and then allows the end of generation."""
    import llama_cpp

    from convogen_tui.llm.sampler import Scratch, grammar_sampler

    vocab = backend.model.vocab
    grammar = grammar_sampler(vocab, constraint)
    scratch = Scratch(llama_cpp.llama_vocab_n_tokens(vocab))
    try:
        for token in backend.model.tokenize(text.encode(), add_bos=False, special=False):
            if not scratch.allows(grammar, token):
                return False
            llama_cpp.llama_sampler_accept(grammar, token)
        return scratch.allows(grammar, llama_cpp.llama_vocab_eos(vocab))
    finally:
        llama_cpp.llama_sampler_free(grammar)


def _dialog(turns: int, text: str = "Fair point, but why?") -> str:
    return "\n".join(f"SocBot: {text}\nUser: {text}" for _ in range(turns))


def test_dialog_grammar_takes_the_form_and_nothing_else(embedded_backend):
    from convogen_tui.core.judging.quality import ResolvedQuality
    from convogen_tui.core.making.grammar import dialog_shape

    shape = dialog_shape(ResolvedQuality(turns=8), 1444)
    dialog = shape.constraint()
    good = _dialog(8)
    assert _accepts(embedded_backend, dialog, good)
    assert _accepts(embedded_backend, dialog, good.replace("Fair", "🙄 fair", 1))  # emoji are words
    wrong = {
        "user-first": good.replace("SocBot:", "Us3r:").replace("User:", "SocBot:").replace("Us3r:", "User:"),
        "alternation": good.replace("User: Fair point, but why?\nSocBot:", "User: x.\nUser:", 1),
        "short": _dialog(7),
        "extra-turns": _dialog(9),
        "wrapper before": "Here is the conversation:\n" + good,
        "wrapper after": good + "\n\nI hope this helps!",
        "empty-message": good.replace("User: Fair point, but why?", "User: ", 1),
        "placeholder": good.replace("User: Fair point, but why?", "User: [no response]", 1),
        "over the cap": good.replace("Fair point", "x" * shape.max_chars, 1),
        "blank line between": good.replace("\n", "\n\n", 1),
    }
    for name, text in wrong.items():
        assert not _accepts(embedded_backend, dialog, text), name


def test_restyle_grammar_takes_the_twin_with_or_without_the_leading_post(embedded_backend):
    from convogen_tui.core.judging.quality import ResolvedQuality
    from convogen_tui.core.making.grammar import restyle_shape

    conv = "SocBot: Hello there, friend.\nUser: Go away.\nSocBot: Why so?\nUser: Because."
    shape = restyle_shape(conv, ResolvedQuality(), 1444)
    assert shape is not None and shape.max_chars == 280
    restyle = shape.constraint()
    twin = "SocBot: hey 👋\nUser: nope\nSocBot: how come?\nUser: cuz."
    assert _accepts(embedded_backend, restyle, twin)
    assert _accepts(embedded_backend, restyle, "User: the moon is fake\n\n" + twin)
    assert not _accepts(embedded_backend, restyle, twin.replace("SocBot: how come?", "User: how come?"))
    assert not _accepts(embedded_backend, restyle, twin + "\nSocBot: one more")
    assert not _accepts(embedded_backend, restyle, twin.replace("nope", "n" * 281))
    assert _accepts(embedded_backend, restyle, twin.replace("nope", "n" * 280))


# the embedded model under the grammars: the done-when, at a small size ------------------------
FORM_RULES = {
    "no-dialog", "short", "extra-turns", "user-first", "alternation", "wrapper", "empty-message",
    "restyle-no-dialog", "restyle-too-long", "restyle-mismatch",
}  # fmt: skip


def test_a_constrained_run_writes_no_form_defect(sample, datasets, cli):
    from convogen_tui.core.judging.verdicts import judge, quality_settings
    from convogen_tui.core.keeping.store import ConversationStore

    code, out, err = cli(
        "generate", "sample", "--root", datasets, "--limit", "4", "--parallel", "4",
        "--max-tokens", "400", "--seed", "11",
    )  # fmt: skip
    assert code == 0, err
    assert "constrained: 8 turns, SocBot first" in out
    store = ConversationStore(sample)
    settings = quality_settings(sample)
    rows = store.list()
    assert len(rows) == 4
    for row in rows:
        record, twin = store.load(row.id)
        assert twin is not None
        flags = {v.rule for v in judge(record, twin, settings)} & FORM_RULES
        assert not flags, (flags, record.conv, twin.restyled_conv)
        assert record.provenance is not None and record.provenance.constrained
        assert record.provenance.finish_reason == "stop"
