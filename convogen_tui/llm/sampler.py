"""A sequence's sampler: the seeded chain Llama.generate built, and a grammar when the request has one.

Unconstrained sequences are sampled by one C call (``llama_sampler_sample``), as before. A sequence
with a :class:`~convogen_tui.core.making.backend.Constraint` gets llama.cpp's grammar sampler too,
applied the way llama.cpp's own ``common_sampler`` does it, because the grammar over the whole
vocabulary is slow (every token's text is matched against the grammar's stacks): the chain picks a
token from all the logits as usual, the grammar checks only that one token, and only when it is
rejected are the logits filtered by the grammar over the whole vocabulary and the chain drawn again.
Most tokens of a dialog pass (the model writes the form anyway), so the grammar costs little.

When the grammar reaches its end it accepts nothing but an end-of-generation token, so the sequence
stops there. A grammar llama.cpp cannot parse is a :class:`GrammarError` for that request only.
"""

from __future__ import annotations

import ctypes
import math
import threading
from typing import Any

import numpy as np

from convogen_tui.core.errors import ModelError, Problem
from convogen_tui.core.making.backend import Constraint
from convogen_tui.core.making.experiment import SamplingSettings

PENALTY_LAST_N = 64  # what Llama.generate used, so repeat_penalty keeps its meaning
_TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])  # llama_token_data


class GrammarError(ModelError):
    """A constraint's grammar that llama.cpp cannot use (does not parse, or allows no token here)."""


def make_sampler(sampling: SamplingSettings, seed: int, vocab: Any) -> Any:
    """The sampler chain Llama.generate built (penalties, top-k, top-p, temperature, seeded draw).

    Each sequence owns one, so its random stream depends only on its own seed.
    """
    import llama_cpp

    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = llama_cpp.llama_sampler_chain_add
    if sampling.repeat_penalty != 1.0:
        n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        add(
            chain,
            llama_cpp.llama_sampler_init_penalties(
                n_vocab, PENALTY_LAST_N, sampling.repeat_penalty, 0.0, 0.0
            ),
        )
    if sampling.temperature <= 0:
        add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain
    if sampling.top_k > 0:
        add(chain, llama_cpp.llama_sampler_init_top_k(sampling.top_k))
    if sampling.top_p < 1.0:
        add(chain, llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
    add(chain, llama_cpp.llama_sampler_init_temp(sampling.temperature))
    add(chain, llama_cpp.llama_sampler_init_dist(seed % 0xFFFFFFFF))  # 0xFFFFFFFF means "random"
    return chain


def grammar_sampler(vocab: Any, constraint: Constraint) -> Any:
    """llama.cpp's grammar sampler for ``constraint`` (root rule ``root``); GrammarError if it fails."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(vocab, constraint.gbnf.encode("utf-8"), b"root")
    if not sampler:
        raise GrammarError(
            Problem(
                None,
                f"llama.cpp cannot parse the {constraint.name} grammar "
                f"(sha256 {constraint.sha256[:12]}); its parser printed why above",
                hint="see the grammar with `convogen check EXPT --grammar`, or run with --no-constrain",
            )
        )
    return sampler


_checked_lock = threading.Lock()
_checked: dict[tuple[int, str], str] = {}  # (vocab, grammar sha256) -> "" or the error


def check_grammar(vocab: Any, constraint: Constraint) -> None:
    """Raise GrammarError now if ``constraint`` does not parse (each grammar is tried once)."""
    import llama_cpp

    key = (ctypes.cast(vocab, ctypes.c_void_p).value or 0, constraint.sha256)
    with _checked_lock:
        error = _checked.get(key)
        if error is None:
            try:
                llama_cpp.llama_sampler_free(grammar_sampler(vocab, constraint))
                error = ""
            except GrammarError as exc:
                error = str(exc)
            _checked[key] = error
    if error:
        raise GrammarError(Problem(None, error))


class Scratch:
    """One token-data array over the whole vocabulary, shared by the samplers of one engine.

    Sampling happens on the engine's one thread, one sequence after another, so one buffer does.
    """

    def __init__(self, n_vocab: int) -> None:
        import llama_cpp

        self.n_vocab = n_vocab
        self.ids = np.arange(n_vocab, dtype=np.int32)
        self.data = np.zeros(n_vocab, dtype=_TOKEN_DATA)
        self.pointer = self.data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data))
        self.one = llama_cpp.llama_token_data(0, 0.0, 0.0)
        self.one_array = llama_cpp.llama_token_data_array(ctypes.pointer(self.one), 1, -1, False)

    def fill(self, ctx: Any, idx: int) -> Any:
        """A llama_token_data_array of sequence ``idx``'s logits (every token, unsorted)."""
        import llama_cpp

        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, idx), shape=(self.n_vocab,))
        data = self.data
        data["id"] = self.ids
        data["logit"] = logits
        data["p"] = 0.0
        return llama_cpp.llama_token_data_array(self.pointer, self.n_vocab, -1, False)

    def allows(self, grammar: Any, token: int) -> bool:
        """Whether the grammar, in its current state, accepts ``token`` next."""
        import llama_cpp

        self.one.id, self.one.logit, self.one.p = token, 1.0, 0.0
        self.one_array.size, self.one_array.selected, self.one_array.sorted = 1, -1, False
        llama_cpp.llama_sampler_apply(grammar, ctypes.byref(self.one_array))
        return not math.isinf(self.one.logit)


class SequenceSampler:
    """What one sequence samples with: its seeded chain, and its grammar if the request has one."""

    def __init__(
        self,
        sampling: SamplingSettings,
        seed: int,
        vocab: Any,
        constraint: Constraint | None = None,
        scratch: Scratch | None = None,
    ) -> None:
        self.chain = make_sampler(sampling, seed, vocab)
        self.grammar: Any = None
        self.scratch = scratch
        self.resampled = 0  # tokens the grammar rejected (the chain drew again from what it allows)
        if constraint is not None:
            assert scratch is not None, "a constrained sequence needs the engine's scratch buffer"
            try:
                self.grammar = grammar_sampler(vocab, constraint)
            except GrammarError:
                self.free()
                raise

    def sample(self, ctx: Any, idx: int) -> int:
        """The next token of the sequence whose logits are output ``idx`` of the last decode."""
        import llama_cpp

        if self.grammar is None:
            return int(llama_cpp.llama_sampler_sample(self.chain, ctx, idx))
        scratch = self.scratch
        assert scratch is not None
        cur = scratch.fill(ctx, idx)
        llama_cpp.llama_sampler_apply(self.chain, ctypes.byref(cur))
        token = int(cur.data[cur.selected].id)
        if not scratch.allows(self.grammar, token):
            self.resampled += 1
            cur = scratch.fill(ctx, idx)
            llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(cur))
            llama_cpp.llama_sampler_apply(self.chain, ctypes.byref(cur))
            token = int(cur.data[cur.selected].id)
            if not scratch.allows(self.grammar, token):  # accepting it would abort llama.cpp
                raise GrammarError(Problem(None, "the grammar allows no token here (can it end?)"))
        llama_cpp.llama_sampler_accept(self.chain, token)
        llama_cpp.llama_sampler_accept(self.grammar, token)
        return token

    def free(self) -> None:
        import llama_cpp

        for sampler in (self.chain, self.grammar):
            if sampler is not None:
                llama_cpp.llama_sampler_free(sampler)
        self.chain = self.grammar = None
