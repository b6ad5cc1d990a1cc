"""Our own decode loop on llama.cpp's low-level API: one context, N sequences, continuous batching.

Why not ``Llama.generate``: it decodes one sequence per context, and its per-token Python path cost
about a third of raw decode speed on a small CPU model. Here a step is one ``llama_decode`` holding
one token per running sequence, then one C sampler call per sequence; that is all the Python there is.

KV memory, bounded: the context has one KV stream per sequence (``kv_unified`` off), each of
``n_ctx`` cells, so the cache takes ``n_ctx x N x kv_bytes_per_token`` and never more; a sequence
can always run to its budget and never evicts another. Each sequence attends only to its own stream,
so on CPU its logits do not depend on what else is in the batch: same seed, same text, alone or not.

Prefix sharing: every sequence id remembers the tokens its stream holds (kept after a request ends).
A new request starts from the longest token prefix found in any stream: its own (truncate, free) or
another's (``llama_memory_seq_cp`` of that stream, then truncate). The system message and template
text before the first placeholder are therefore evaluated once per run, not once per conversation;
matching on tokens rather than text means a BPE merge across the boundary can never share wrong KV.

Same text with or without a cached prefix, alone or batched (CPU). Two things in llama.cpp make a
sequence's numbers depend on its neighbours, both measured on the embedded model:
- a prompt token's KV depends on which tokens share its micro-batch (splitting a 98-token prompt at
  token 10 moved the last logits by up to 0.85). So prompts are evaluated in pieces of ``chunk``
  tokens at fixed positions (0, 16, 32, ...), and a cached prefix is reused only in whole chunks
  that were computed that way: a prompt's KV is then bit-identical whether it was computed now,
  copied from another sequence, or left over from the last job. (On a GPU, where text is not
  promised identical anyway, ``chunk`` is 1: any cached prefix is reused, prompts go in 512s.)
- the CPU flash-attention kernel gives a sequence different logits when a shorter sequence shares
  the decode batch (0.58). Without flash attention the logits were bit-identical, so it is off when
  nothing is offloaded to a GPU (at these context lengths it barely changes CPU speed). On a GPU it
  stays on and batched text may drift from the text alone after some tokens: GPU kernels pick
  their tiling by batch size, which changes rounding.
"""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from convogen_tui.core.backend import (
    FinishReason,
    GenerationStats,
    Request,
    StreamChunk,
    StreamDone,
    StreamEvent,
    StreamFailed,
    StreamPrompt,
    StreamStarted,
)
from convogen_tui.core.errors import ModelError, Problem
from convogen_tui.core.experiment import SamplingSettings

PENALTY_LAST_N = 64  # what Llama.generate used, so repeat_penalty keeps its meaning
MIN_COPY = 16  # copying another sequence's stream pays only when it saves this many tokens
EXACT_CHUNK = 16  # prompt tokens per llama_decode when text must not depend on the cache (CPU)
PROMPT_REPORT_S = 0.25  # how often a long prompt's reading progress is reported


@dataclass
class Work:
    """A request ready to run: its tokens, its token budget and the stats its stream fills in."""

    request: Request
    tokens: list[int]
    budget: int
    stats: GenerationStats = field(default_factory=GenerationStats)


Pull = Callable[[], "Work | StreamFailed | None"]


@dataclass
class _Slot:
    seq: int
    work: Work | None = None
    sampler: Any = None
    pending: int = -1
    parts: list[str] = field(default_factory=list)
    decoder: Any = None


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the shared token prefix (compares 64-token slices first: prompts share hundreds)."""
    n = min(len(a), len(b))
    i = 0
    while i + 64 <= n and a[i : i + 64] == b[i : i + 64]:
        i += 64
    while i < n and a[i] == b[i]:
        i += 1
    return i


class LlamaEngine:
    """Owns the llama.cpp context; runs one request (``stream``) or many (``run_many``) through it.

    The context is sized for the largest parallelism asked so far and kept, with its KV streams,
    so a rerun starts from the cached prefix. Only one run uses it at a time (a lock).
    """

    def __init__(
        self,
        model: Any,
        vocab: Any,
        n_ctx: int,
        n_threads: int,
        piece: Callable[[int], bytes],
        n_batch: int = 512,
        flash_attn: bool | None = None,
        chunk: int = EXACT_CHUNK,
    ) -> None:
        self._model = model
        self._vocab = vocab
        self.n_ctx = n_ctx
        self._threads = n_threads
        self._piece = piece
        self._n_batch = n_batch
        self.flash_attn = flash_attn  # None: llama.cpp decides
        self.chunk = chunk
        self._ctx: Any = None
        self._mem: Any = None
        self._batch: Any = None
        self.capacity = 0
        self._held: list[list[int]] = []  # per sequence id: the tokens its KV stream holds
        self._chunked: list[int] = []  # per sequence id: leading held tokens evaluated in whole chunks
        self.lock = threading.Lock()
        self.share_prefix = True
        self.ignore_eos = False  # for benchmarks: run every request to its full budget
        self.prompt_tokens_evaluated = 0  # prompt tokens actually decoded (after prefix reuse)

    # context -----------------------------------------------------------------------------
    def ensure_context(self, capacity: int) -> None:
        """Make sure the context holds ``capacity`` sequences of ``n_ctx`` tokens each."""
        import llama_cpp

        if self._ctx is not None and self.capacity >= capacity:
            return
        self.free()
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self.n_ctx * capacity
        params.n_seq_max = capacity
        params.n_batch = self._n_batch
        params.n_ubatch = self._n_batch  # a decode step (one token per sequence) is one micro-batch
        params.n_threads = self._threads
        params.n_threads_batch = self._threads
        params.kv_unified = False
        if self.flash_attn is not None:
            params.flash_attn_type = int(self.flash_attn)  # LLAMA_FLASH_ATTN_TYPE_DISABLED/ENABLED
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(self._model, params)
        if not ctx:
            raise ModelError(
                Problem(
                    None,
                    f"llama.cpp could not make room for {capacity} sequence(s) x {self.n_ctx} tokens",
                    hint='the KV cache grows with both: lower --parallel or "n_ctx" in expt-setup.json',
                )
            )
        self._ctx = ctx
        self._mem = llama_cpp.llama_get_memory(ctx)
        self._batch = llama_cpp.llama_batch_init(max(self._n_batch, capacity), 0, 1)
        self.capacity = capacity
        self._held = [[] for _ in range(capacity)]
        self._chunked = [0] * capacity

    def set_threads(self, n_threads: int) -> None:
        """CPU threads for the next decode (the context keeps its KV cache)."""
        import llama_cpp

        self._threads = n_threads
        if self._ctx is not None:
            llama_cpp.llama_set_n_threads(self._ctx, n_threads, n_threads)

    def free(self) -> None:
        import llama_cpp

        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx is not None:
            llama_cpp.llama_free(self._ctx)
            self._ctx = self._mem = None
        self.capacity = 0
        self._held = []
        self._chunked = []

    def forget(self) -> None:
        """Drop every cached prefix (the next request evaluates its whole prompt)."""
        import llama_cpp

        if self._mem is not None:
            llama_cpp.llama_memory_clear(self._mem, False)
        self._held = [[] for _ in range(self.capacity)]
        self._chunked = [0] * self.capacity

    # the loop ----------------------------------------------------------------------------
    def run(self, pull: Pull, cancel: threading.Event, parallel: int) -> Iterator[StreamEvent]:
        """Continuous batching: keep ``parallel`` sequences decoding, pulling work as slots free.

        ``pull`` returning None means nothing waits right now: it is asked again when a slot frees,
        and the run ends when it returns None with no sequence running. Every request pulled ends
        with exactly one StreamDone or StreamFailed, unless the caller closes this generator early.
        """
        import llama_cpp

        with self.lock:
            self.ensure_context(parallel)
            slots = [_Slot(seq) for seq in range(parallel)]
            try:
                while True:
                    for slot in slots:
                        if slot.work is not None and _cancelled(slot.work.request):
                            yield from self._finish(slot, "cancelled")
                    if cancel.is_set():
                        break
                    idle = yield from self._admit(slots, pull, cancel)
                    active = [s for s in slots if s.work is not None]
                    if not active:
                        if idle or cancel.is_set():
                            break
                        continue  # every new request ended at its first token: pull again
                    yield from self._step(active, llama_cpp)
                for slot in slots:
                    if slot.work is not None:
                        yield from self._finish(slot, "cancelled")
            finally:
                for slot in slots:
                    self._release(slot)

    def _admit(
        self, slots: list[_Slot], pull: Pull, cancel: threading.Event
    ) -> Generator[StreamEvent, None, bool]:
        """Fill free slots from ``pull``; returns True when it said nothing is waiting."""
        for slot in slots:
            if slot.work is not None:
                continue
            if cancel.is_set():
                return False
            item = pull()
            while isinstance(item, StreamFailed):
                yield item
                item = pull()
            if item is None:
                return True  # nothing waits now; a finishing job may queue more (its restyle)
            yield from self._start(slot, item)
        return False

    def _start(self, slot: _Slot, work: Work) -> Iterator[StreamEvent]:
        """Prefill one request into its slot's stream (reusing a cached prefix), sample token one."""
        import llama_cpp

        stats = work.stats
        stats.started = time.perf_counter()
        key = work.request.key
        yield StreamStarted(key, len(work.tokens))
        tokens = work.tokens
        keep = self._reuse_prefix(slot.seq, tokens)
        error = yield from self._decode_prompt(slot.seq, tokens, keep, key)
        if error:
            self._drop(slot.seq)
            yield StreamFailed(key, error)
            return
        slot.work = work
        slot.sampler = make_sampler(work.request.sampling, work.request.seed, self._vocab)
        slot.parts = []
        slot.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        token = llama_cpp.llama_sampler_sample(slot.sampler, self._ctx, -1)
        yield from self._accept(slot, token, llama_cpp)

    def _step(self, active: list[_Slot], llama_cpp: Any) -> Iterator[StreamEvent]:
        """One llama_decode with the pending token of every running sequence, then sample each."""
        batch = self._batch
        tok, pos, nseq, seqs, logits = batch.token, batch.pos, batch.n_seq_id, batch.seq_id, batch.logits
        for i, slot in enumerate(active):
            tok[i] = slot.pending
            pos[i] = len(self._held[slot.seq])
            nseq[i] = 1
            seqs[i][0] = slot.seq
            logits[i] = 1
        batch.n_tokens = len(active)
        rc = llama_cpp.llama_decode(self._ctx, batch)
        if rc != 0:
            for slot in active:
                assert slot.work is not None
                key = slot.work.request.key
                self._drop(slot.seq)
                self._release(slot)
                yield StreamFailed(key, f"llama_decode failed ({rc})")
            return
        sample = llama_cpp.llama_sampler_sample
        ctx = self._ctx
        for i, slot in enumerate(active):
            self._held[slot.seq].append(slot.pending)
            yield from self._accept(slot, sample(slot.sampler, ctx, i), llama_cpp)

    def _accept(self, slot: _Slot, token: int, llama_cpp: Any) -> Iterator[StreamEvent]:
        work = slot.work
        assert work is not None
        stats = work.stats
        if not self.ignore_eos and llama_cpp.llama_vocab_is_eog(self._vocab, token):
            yield from self._finish(slot, "stop")
            return
        stats.completion_tokens += 1
        now = time.perf_counter()
        if stats.first_token_s is None:
            stats.first_token_s = now - stats.started
        text = slot.decoder.decode(self._piece(token))
        if text:
            slot.parts.append(text)
            yield StreamChunk(work.request.key, text, stats.completion_tokens, now - stats.started)
        if stats.completion_tokens >= work.budget:
            yield from self._finish(slot, "length")
        else:
            slot.pending = token

    def _finish(self, slot: _Slot, reason: FinishReason) -> Iterator[StreamEvent]:
        work = slot.work
        assert work is not None
        stats = work.stats
        tail = slot.decoder.decode(b"", final=True)
        self._release(slot)
        stats.finish_reason = reason
        stats.elapsed_s = time.perf_counter() - stats.started
        if tail:
            slot.parts.append(tail)
            yield StreamChunk(work.request.key, tail, stats.completion_tokens, stats.elapsed_s)
        yield StreamDone(work.request.key, "".join(slot.parts), stats)

    def _release(self, slot: _Slot) -> None:
        """Free the slot for the next request; its KV stays cached as a prefix source."""
        import llama_cpp

        if slot.sampler is not None:
            llama_cpp.llama_sampler_free(slot.sampler)
            slot.sampler = None
        slot.work = None

    # KV bookkeeping ----------------------------------------------------------------------
    def _reuse_prefix(self, seq: int, tokens: list[int]) -> int:
        """Keep the longest cached prefix of ``tokens`` in ``seq``'s stream, in whole chunks.

        Returns its length, a multiple of ``chunk``. The last prompt token is always decoded again:
        its logits start the answer.
        """
        import llama_cpp

        def usable(other: int) -> int:
            held = self._held[other]
            n = min(common_prefix(held, tokens), len(tokens) - 1, self._chunked[other])
            return n // self.chunk * self.chunk

        source, best = seq, usable(seq) if self.share_prefix else 0
        if self.share_prefix:
            for other in range(self.capacity):
                if other != seq and self._chunked[other] >= best + max(self.chunk, MIN_COPY):
                    n = usable(other)
                    if n > best:
                        source, best = other, n
        if source != seq:
            # streams are separate buffers: copy the whole stream, then cut it to the prefix
            llama_cpp.llama_memory_seq_rm(self._mem, seq, -1, -1)
            llama_cpp.llama_memory_seq_cp(self._mem, source, seq, -1, -1)
        if not llama_cpp.llama_memory_seq_rm(self._mem, seq, best, -1):
            llama_cpp.llama_memory_seq_rm(self._mem, seq, -1, -1)
            best = 0
        self._held[seq] = tokens[:best]
        self._chunked[seq] = best
        return best

    def _decode_prompt(
        self, seq: int, tokens: list[int], start: int, key: int = 0
    ) -> Generator[StreamPrompt, None, str | None]:
        """Decode tokens[start:] into ``seq``, one llama_decode per chunk; logits for the last only.

        Yields how far it got (StreamPrompt) first and then every PROMPT_REPORT_S; returns an error.
        """
        import llama_cpp

        batch = self._batch
        n = len(tokens)
        step = self.chunk if self.chunk > 1 else self._n_batch
        yield StreamPrompt(key, start, n)
        reported = time.perf_counter()
        for first in range(start, n, step):
            if first > start and time.perf_counter() - reported >= PROMPT_REPORT_S:
                reported = time.perf_counter()
                yield StreamPrompt(key, first, n)
            chunk = tokens[first : first + step]
            for i, token in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = first + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = 0
            batch.logits[len(chunk) - 1] = int(first + len(chunk) == n)
            batch.n_tokens = len(chunk)
            rc = llama_cpp.llama_decode(self._ctx, batch)
            if rc != 0:
                return f"llama_decode failed on the prompt ({rc})"
            self._held[seq].extend(chunk)
            self.prompt_tokens_evaluated += len(chunk)
        self._chunked[seq] = n // self.chunk * self.chunk  # a last, partial chunk is not reusable
        return None

    def _drop(self, seq: int) -> None:
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self._mem, seq, -1, -1)
        self._held[seq] = []
        self._chunked[seq] = 0


def _cancelled(request: Request) -> bool:
    cancel = getattr(request, "cancel", None)
    return cancel is not None and cancel.is_set()


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
