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

WIDE_K = 1024  # candidates the grammar checks before it checks the whole vocabulary
PENALTY_LAST_N = 64  # what Llama.generate used, so repeat_penalty keeps its meaning
_TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])  # llama_token_data


class GrammarError(ModelError):
    """A constraint's grammar that llama.cpp cannot use (does not parse, or allows no token here)."""


def make_sampler(sampling: SamplingSettings, seed: int, vocab: Any) -> Any:
    """The sampler chain Llama.generate built (penalties, top-k, top-p, temperature, seeded draw).

    Each sequence owns one, so its random stream depends only on its own seed.
    """
    truncate, draw = _stages(sampling, seed, vocab)
    return _chain(truncate + draw)


def _stages(sampling: SamplingSettings, seed: int, vocab: Any) -> tuple[list[Any], list[Any]]:
    """The chain's samplers in two stages: penalties and top-k, then top-p, temperature and draw.

    A grammar goes between them when the first draw is rejected (:class:`SequenceSampler`). With
    greedy decoding top-k 64 is added to the first stage: the best token allowed is the same.
    """
    import llama_cpp

    truncate: list[Any] = []
    if sampling.repeat_penalty != 1.0:
        n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        truncate.append(
            llama_cpp.llama_sampler_init_penalties(n_vocab, PENALTY_LAST_N, sampling.repeat_penalty, 0.0, 0.0)
        )
    if sampling.temperature <= 0:
        return truncate, [llama_cpp.llama_sampler_init_greedy()]
    if sampling.top_k > 0:
        truncate.append(llama_cpp.llama_sampler_init_top_k(sampling.top_k))
    draw = []
    if sampling.top_p < 1.0:
        draw.append(llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
    draw.append(llama_cpp.llama_sampler_init_temp(sampling.temperature))
    draw.append(llama_cpp.llama_sampler_init_dist(seed % 0xFFFFFFFF))  # 0xFFFFFFFF means "random"
    return truncate, draw


def _chain(samplers: list[Any]) -> Any:
    import llama_cpp

    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    for sampler in samplers:
        llama_cpp.llama_sampler_chain_add(chain, sampler)  # the chain owns and frees it
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
        self._floats = ctypes.c_float * n_vocab  # made once: numpy's as_array makes a type per call
        self.best = np.zeros(min(WIDE_K, n_vocab), dtype=_TOKEN_DATA)  # the fill_best buffer
        self.best_pointer = self.best.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data))
        self.one = llama_cpp.llama_token_data(0, 0.0, 0.0)
        self.one_array = llama_cpp.llama_token_data_array(ctypes.pointer(self.one), 1, -1, False)

    def _logits(self, ctx: Any, idx: int) -> np.ndarray:
        import llama_cpp

        address = ctypes.cast(llama_cpp.llama_get_logits_ith(ctx, idx), ctypes.c_void_p).value
        return np.frombuffer(self._floats.from_address(address), dtype=np.float32)

    def fill(self, ctx: Any, idx: int) -> Any:
        """A llama_token_data_array of sequence ``idx``'s logits (every token, unsorted)."""
        import llama_cpp

        data = self.data
        data["id"] = self.ids  # the samplers sort the array in place
        data["logit"] = self._logits(ctx, idx)
        data["p"] = 0.0
        return llama_cpp.llama_token_data_array(self.pointer, self.n_vocab, -1, False)

    def fill_best(self, ctx: Any, idx: int) -> Any:
        """The WIDE_K tokens with the highest logits only (numpy's partition: no full sort)."""
        import llama_cpp

        logits = self._logits(ctx, idx)
        k = len(self.best)
        top = np.argpartition(logits, -k)[-k:]
        best = self.best
        best["id"] = top
        best["logit"] = logits[top]
        best["p"] = 0.0
        return llama_cpp.llama_token_data_array(self.best_pointer, k, -1, False)

    def any_allowed(self, cur: Any) -> bool:
        """Whether the grammar left any candidate of ``cur`` (rejected ones have logit -inf)."""
        data = cur.data
        return any(not math.isinf(data[i].logit) for i in range(cur.size))

    def allows(self, grammar: Any, token: int) -> bool:
        """Whether the grammar, in its current state, accepts ``token`` next."""
        import llama_cpp

        self.one.id, self.one.logit, self.one.p = token, 1.0, 0.0
        self.one_array.size, self.one_array.selected, self.one_array.sorted = 1, -1, False
        llama_cpp.llama_sampler_apply(grammar, ctypes.byref(self.one_array))
        return not math.isinf(self.one.logit)


class SequenceSampler:
    """What one sequence samples with: its seeded chain, and its grammar if the request has one.

    Unconstrained, the chain is one llama.cpp chain sampled in one C call. Constrained, the chain is
    held in its two stages (:func:`_stages`) so the grammar can go between them, and a token is
    drawn in up to three tries, cheapest first:
    1. the whole chain over all the logits, as unconstrained; the grammar checks that one token
       (most tokens pass: the model writes the form anyway);
    2. rejected: the first stage again (penalties, top-k), the grammar over those few candidates,
       then the draw among the ones it allows;
    3. none of them allowed: the grammar over the best WIDE_K tokens, and if none of those either,
       over the whole vocabulary; then the whole chain over what it allows.
    The whole vocabulary is what llama.cpp's common sampler checks on every rejection; over 50k
    tokens that takes milliseconds, and a dialog's labels and line ends are rejected often.
    """

    def __init__(
        self,
        sampling: SamplingSettings,
        seed: int,
        vocab: Any,
        constraint: Constraint | None = None,
        scratch: Scratch | None = None,
    ) -> None:
        self.grammar: Any = None
        self.scratch = scratch
        self.resampled = 0  # tokens the grammar rejected at step 1
        self.full = 0  # of those, tokens that needed the grammar over the whole vocabulary
        if constraint is None:
            self.stages: tuple[Any, ...] = (make_sampler(sampling, seed, vocab),)
            return
        assert scratch is not None, "a constrained sequence needs the engine's scratch buffer"
        if sampling.temperature <= 0:
            sampling = sampling.model_copy(update={"top_k": 64})
        truncate, draw = _stages(sampling, seed, vocab)
        self.stages = (_chain(truncate), _chain(draw))
        try:
            self.grammar = grammar_sampler(vocab, constraint)
        except GrammarError:
            self.free()
            raise

    def sample(self, ctx: Any, idx: int) -> int:
        """The next token of the sequence whose logits are output ``idx`` of the last decode."""
        import llama_cpp

        if self.grammar is None:
            return int(llama_cpp.llama_sampler_sample(self.stages[0], ctx, idx))
        scratch = self.scratch
        assert scratch is not None
        apply, grammar = llama_cpp.llama_sampler_apply, self.grammar
        truncate, draw = self.stages
        cur = scratch.fill(ctx, idx)
        apply(truncate, ctypes.byref(cur))
        apply(draw, ctypes.byref(cur))
        token = int(cur.data[cur.selected].id)
        if not scratch.allows(grammar, token):
            self.resampled += 1
            cur = scratch.fill(ctx, idx)
            apply(truncate, ctypes.byref(cur))
            apply(grammar, ctypes.byref(cur))
            # the grammar leaves "sorted" set over the -inf it wrote: the draw would take the first
            # candidate's logit (maybe -inf) as the maximum, and draw from NaN
            cur.sorted = False
            if not scratch.any_allowed(cur):
                cur = self._wider(ctx, idx)
            apply(draw, ctypes.byref(cur))
            token = int(cur.data[cur.selected].id)
            if not scratch.allows(grammar, token):  # accepting it would abort llama.cpp
                raise GrammarError(Problem(None, "the grammar allows no token here (can it end?)"))
        for stage in self.stages:
            llama_cpp.llama_sampler_accept(stage, token)
        llama_cpp.llama_sampler_accept(grammar, token)
        return token

    def _wider(self, ctx: Any, idx: int) -> Any:
        """Candidates for a token that no top-k candidate is allowed to be: the grammar over the
        best WIDE_K tokens, then over all of them if none of those is allowed either."""
        import llama_cpp

        scratch, apply = self.scratch, llama_cpp.llama_sampler_apply
        assert scratch is not None
        cur = scratch.fill_best(ctx, idx)
        apply(self.grammar, ctypes.byref(cur))
        cur.sorted = False
        if not scratch.any_allowed(cur):
            self.full += 1
            cur = scratch.fill(ctx, idx)
            apply(self.grammar, ctypes.byref(cur))
        apply(self.stages[0], ctypes.byref(cur))  # penalties, top-k: the allowed ones come first
        return cur

    def free(self) -> None:
        import llama_cpp

        for sampler in (*self.stages, self.grammar):
            if sampler is not None:
                llama_cpp.llama_sampler_free(sampler)
        self.stages, self.grammar = (), None
