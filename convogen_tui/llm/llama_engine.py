"""Our own decode loop on llama.cpp's low-level API: one context, N sequences, continuous batching.

Why not ``Llama.generate``: it decodes one sequence per context, and its per-token Python path cost
about a third of raw decode speed on a small CPU model. Here a step is one ``llama_decode`` holding
one token per running sequence, then one C sampler call per sequence; that is all the Python there is.
A sequence whose request carries a grammar samples through llm/sampler.py (the chain, then the
grammar checks the token drawn), so constrained and free sequences share every decode step.

KV memory, sized to the run: the context has one KV stream per sequence (``kv_unified`` off), each
of ``cells`` cells, where ``cells`` is what the run's longest request needs (prompt + new tokens,
rounded up to llama.cpp's 256), not the experiment's ``n_ctx``. ``reserve(parallel, tokens)`` sizes
it before a run; a request that still does not fit waits until the running ones finish, then the
streams grow (once). A sequence can always run to its budget and never evicts another.

Why separate streams and not one unified cache shared by all sequences, on CPU and GPU alike:
- throughput: with a unified cache every token attends over every sequence's cells (masked), so
  attention costs N times more at N sequences; separate streams attend over their own cells only
  (llama.cpp's "high-throughput" mode). With 64 sequences of 1,000 tokens on a 70B model that is
  ~10 TFLOP per step unified against ~0.2 split: about as long as reading its 38 GB of weights.
- the CPU promise (same seed, same text, alone or batched): a unified cache interleaves the
  sequences' cells, which changes the order attention sums a sequence's own keys in, hence the
  rounding. Measured on the embedded model (6 conversations of 40 tokens, 4 at once): unified, 0
  of 6 came out as alone (the first differed after 4 characters); separate streams, 6 of 6. So the
  CPU keeps separate streams, and the GPU too, for the throughput above.
llama.cpp puts a decode step in one micro-batch only when its sequence ids are consecutive, so a
sequence is moved down into a freed lower stream when nothing waits (``_compact``): a run's tail
stays one micro-batch per step instead of one per gap (each re-reading every weight).

Prefix sharing: every sequence id remembers the tokens its stream holds (kept after a request ends).
A new request starts from the longest token prefix found in any stream: its own (truncate, free) or
another's (``llama_memory_seq_cp`` of that stream, then truncate). Requests admitted together (a
run's first N) evaluate the prefix they share once, in the first one's stream, and copy it; their
remaining prompt tokens then go through llama_decode together (on a GPU: packed up to ``n_batch``
tokens, which is 2048 there). Matching on tokens rather than text means a BPE merge across the
boundary can never share wrong KV.

Same text with or without a cached prefix, alone or batched (CPU). Two things in llama.cpp make a
sequence's numbers depend on its neighbours, both measured on the embedded model:
- a prompt token's KV depends on which tokens share its micro-batch (splitting a 98-token prompt at
  token 10 moved the last logits by up to 0.85). So on CPU prompts are evaluated one sequence at a
  time in pieces of ``chunk`` tokens at fixed positions (0, 16, 32, ...), and a cached prefix is
  reused only in whole chunks that were computed that way: a prompt's KV is then bit-identical
  whether it was computed now, copied from another sequence, or left over from the last job. (On a
  GPU, where text is not promised identical anyway, ``chunk`` is 1: any cached prefix is reused and
  the prompts of new requests are packed together.)
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

from convogen_tui.core.errors import ModelError, Problem
from convogen_tui.core.making import backend
from convogen_tui.llm.sampler import GrammarError, Scratch, SequenceSampler, make_sampler

__all__ = ["LlamaEngine", "Work", "cells_for", "make_sampler"]
MIN_COPY = 16  # copying another sequence's stream pays only when it saves this many tokens
EXACT_CHUNK = 16  # prompt tokens per llama_decode when text must not depend on the cache (CPU)
CELL_ALIGN = 256  # llama.cpp pads every KV stream to a multiple of this many cells
MAX_SEQUENCES = 256  # llama.cpp's LLAMA_MAX_SEQ: sequences one context can hold
_Piece = tuple[int, int, list[int], bool]  # a prompt piece: seq, first position, tokens, ends the prompt
PROMPT_REPORT_S = 0.25  # how often a long prompt's reading progress is reported


def cells_for(tokens: int, n_ctx: int) -> int:
    """KV cells per stream for requests of up to ``tokens`` tokens: rounded up, at most n_ctx's."""
    cap = -(-n_ctx // CELL_ALIGN) * CELL_ALIGN
    return min(cap, max(CELL_ALIGN, -(-tokens // CELL_ALIGN) * CELL_ALIGN))


@dataclass
class Work:
    """A request ready to run: its tokens, its token budget and the stats its stream fills in."""

    request: backend.Request
    tokens: list[int]
    budget: int
    stats: backend.GenerationStats = field(default_factory=backend.GenerationStats)

    @property
    def need(self) -> int:
        """KV cells this request fills at most: its prompt and every token it may generate."""
        return len(self.tokens) + self.budget


Pull = Callable[[], "Work | backend.StreamFailed | None"]


@dataclass
class _Slot:
    seq: int
    work: Work | None = None
    sampler: SequenceSampler | None = None
    pending: int = -1
    parts: list[str] = field(default_factory=list)
    decoder: Any = None


@dataclass
class EngineCounters:
    """What the benchmark reads: where a run's time went (prompts vs decode steps)."""

    prompt_tokens_evaluated: int = 0  # prompt tokens actually decoded (after prefix reuse)
    prompt_s: float = 0.0  # time in prompt llama_decode calls and first-token sampling
    step_tokens: int = 0  # tokens generated by decode steps (not counting each first token)
    steps: int = 0  # decode steps (one llama_decode each)
    step_sequences: int = 0  # sequences summed over steps: / steps = mean batch
    compactions: int = 0  # sequences moved down into a freed stream
    grows: int = 0  # times the streams grew for a request longer than planned


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

    The context is sized by ``reserve`` (streams x cells) and kept, with its KV streams, so a rerun
    starts from the cached prefix. Only one run uses it at a time (a lock).
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
        self.n_ctx = n_ctx  # the most a request may use (the experiment's n_ctx)
        self._threads = n_threads
        self._piece = piece
        self.n_batch = n_batch
        self.flash_attn = flash_attn  # None: llama.cpp decides
        self.chunk = chunk
        self._ctx: Any = None
        self._mem: Any = None
        self._batch: Any = None
        self.capacity = 0
        self.cells = 0  # KV cells per stream in the current context
        self._held: list[list[int]] = []  # per sequence id: the tokens its KV stream holds
        self._chunked: list[int] = []  # per sequence id: leading held tokens evaluated in whole chunks
        self._blocked: Work | None = None  # a request waiting for longer streams
        self.lock = threading.Lock()
        self.share_prefix = True
        self.compact = True
        self.ignore_eos = False  # for benchmarks: run every request to its full budget
        self.counters = EngineCounters()
        self._scratch: Scratch | None = None  # the vocabulary-wide buffer constrained sampling uses

    @property
    def prompt_tokens_evaluated(self) -> int:
        return self.counters.prompt_tokens_evaluated

    # context -----------------------------------------------------------------------------
    def reserve(self, capacity: int, tokens: int) -> None:
        """Size the context for ``capacity`` sequences of up to ``tokens`` tokens each, now.

        A context that already holds that and is not much bigger is kept (with its cached
        prefixes); otherwise it is made again at exactly this size, so the KV cache is what the
        run needs. Raises ModelError when llama.cpp cannot allocate it.
        """
        cells = cells_for(tokens, self.n_ctx)
        with self.lock:
            fits = self._ctx is not None and self.capacity >= capacity and self.cells >= cells
            if fits and self.capacity * self.cells <= 1.25 * capacity * cells:
                return
            self._build(capacity, cells)

    def ensure_context(self, capacity: int, tokens: int | None = None) -> None:
        """Make sure the context holds ``capacity`` sequences of ``tokens`` (default: as now) each."""
        cells = cells_for(tokens, self.n_ctx) if tokens else self.cells or cells_for(self.n_ctx, self.n_ctx)
        if self._ctx is not None and self.capacity >= capacity and self.cells >= cells:
            return
        self._build(max(capacity, self.capacity), max(cells, self.cells))

    def _build(self, capacity: int, cells: int) -> None:
        import llama_cpp

        if capacity > MAX_SEQUENCES:
            raise ModelError(
                Problem(
                    None,
                    f"llama.cpp decodes at most {MAX_SEQUENCES} sequences in one context, not {capacity}",
                    hint="lower --parallel",
                )
            )
        self.free()
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = cells * capacity
        params.n_seq_max = capacity
        params.n_batch = self.n_batch
        params.n_ubatch = self.n_batch  # a decode step (one token per sequence) is one micro-batch
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
                    f"llama.cpp could not make room for {capacity} sequence(s) x {cells} tokens",
                    hint='the KV cache grows with both: lower --parallel, --max-tokens or "n_ctx"',
                )
            )
        self._ctx = ctx
        self._mem = llama_cpp.llama_get_memory(ctx)
        self._batch = llama_cpp.llama_batch_init(max(self.n_batch, capacity), 0, 1)
        self.capacity = capacity
        self.cells = cells
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
        self.cells = 0
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
    def run(self, pull: Pull, cancel: threading.Event, parallel: int) -> Iterator[backend.StreamEvent]:
        """Continuous batching: keep ``parallel`` sequences decoding, pulling work as slots free.

        ``pull`` returning None means nothing waits right now: it is asked again when a slot frees,
        and the run ends when it returns None with no sequence running. Every request pulled ends
        with exactly one StreamDone or StreamFailed, unless the caller closes this generator early.
        """
        import llama_cpp

        with self.lock:
            self.ensure_context(parallel)
            slots = [_Slot(seq) for seq in range(parallel)]
            self._blocked = None
            try:
                while True:
                    for slot in slots:
                        if slot.work is not None and _cancelled(slot.work.request):
                            yield from self._finish(slot, "cancelled")
                    if self._blocked is not None and _cancelled(self._blocked.request):
                        blocked, self._blocked = self._blocked, None  # skipped while it waited
                        yield backend.StreamDone(blocked.request.key, "", _cancelled_stats(blocked))
                    if cancel.is_set():
                        break
                    idle = yield from self._admit(slots, pull, cancel)
                    active = [s for s in slots if s.work is not None]
                    if not active:
                        if self._blocked is not None and not cancel.is_set():
                            self._grow(self._blocked.need)  # nothing runs: make the streams longer
                            continue
                        if idle or cancel.is_set():
                            break
                        continue  # every new request ended at its first token: pull again
                    if self.compact and (idle or self._blocked is not None):
                        active = self._compact(slots)
                    yield from self._step(active, llama_cpp)
                if self._blocked is not None:  # cancelled while waiting: it still gets its end
                    blocked, self._blocked = self._blocked, None
                    yield backend.StreamDone(blocked.request.key, "", _cancelled_stats(blocked))
                for slot in slots:
                    if slot.work is not None:
                        yield from self._finish(slot, "cancelled")
            finally:
                for slot in slots:
                    self._release(slot)

    def _admit(
        self, slots: list[_Slot], pull: Pull, cancel: threading.Event
    ) -> Generator[backend.StreamEvent, None, bool]:
        """Fill free slots from ``pull`` and start them together; True when nothing waits now."""
        new: list[tuple[_Slot, Work]] = []
        idle = False
        for slot in slots:
            if slot.work is not None:
                continue
            if cancel.is_set():
                break
            if self._blocked is not None:  # first in line: nothing overtakes it
                if self._blocked.need > self.cells:
                    break
                item, self._blocked = self._blocked, None
            else:
                pulled = pull()
                while isinstance(pulled, backend.StreamFailed):
                    yield pulled
                    pulled = pull()
                if pulled is None:
                    idle = True  # nothing waits now; a finishing job may queue more (its restyle)
                    break
                if pulled.need > self.cells:
                    self._blocked = pulled  # runs once the streams are longer (the others finish)
                    break
                item = pulled
            new.append((slot, item))
        if new:
            yield from self._start(new, cancel)
        return idle

    def _grow(self, tokens: int) -> None:
        """Make every stream long enough for ``tokens`` (nothing is running; cached prefixes go)."""
        self.counters.grows += 1
        self._build(self.capacity, cells_for(tokens, self.n_ctx))

    def _start(self, new: list[tuple[_Slot, Work]], cancel: threading.Event) -> Iterator[backend.StreamEvent]:
        """Prefill new requests (reusing cached prefixes, a shared prefix once), sample token one.

        A request skipped (or a run cancelled) while its prompt is read stops there, at the next
        llama_decode, instead of after the whole prompt: on a 70B model that is seconds.
        """
        import llama_cpp

        for _, work in new:
            work.stats.started = time.perf_counter()
            yield backend.StreamStarted(work.request.key, len(work.tokens))
        t0 = time.perf_counter()
        keys = {slot.seq: work.request.key for slot, work in new}
        requests = {slot.seq: work.request for slot, work in new}

        def skipped(seq: int) -> bool:
            return cancel.is_set() or _cancelled(requests[seq])

        plan: list[tuple[_Slot, Work, int]] = []
        failed: dict[int, str] = {}
        for i, (slot, work) in enumerate(new):
            tokens = work.tokens
            keep = self._reuse_prefix(slot.seq, tokens)
            # the part of this prompt that later new requests share: evaluate it now, alone, so
            # they copy it instead of evaluating it again
            share = max((common_prefix(tokens, w.tokens) for _, w in new[i + 1 :]), default=0)
            share = min(share, len(tokens) - 1) // self.chunk * self.chunk
            if self.share_prefix and share >= keep + MIN_COPY:
                error = yield from self._decode_prompts([(slot.seq, tokens, keep, share)], keys, {})
                if error:
                    failed[slot.seq] = error
                    continue
                keep = share
            try:
                slot.sampler = self._sampler(work.request)
            except GrammarError as exc:
                failed[slot.seq] = str(exc)
                continue
            plan.append((slot, work, keep))
        firsts: dict[int, int] = {}
        error = yield from self._decode_prompts(
            [(slot.seq, work.tokens, keep, len(work.tokens)) for slot, work, keep in plan],
            keys,
            {slot.seq: slot.sampler for slot, _, _ in plan if slot.sampler is not None},
            firsts,
            skipped,
            failed,
        )
        self.counters.prompt_s += time.perf_counter() - t0
        for slot, work in new:
            if slot.seq not in firsts and slot.seq not in failed and skipped(slot.seq):
                self._drop(slot.seq)  # a part of a prompt is no prefix to reuse
                self._release(slot)
                yield backend.StreamDone(work.request.key, "", _cancelled_stats(work))
                continue
            message = failed.get(slot.seq) or (error if slot.seq not in firsts else None)
            if message:
                self._drop(slot.seq)
                self._release(slot)
                yield backend.StreamFailed(work.request.key, message)
                continue
            if work.request.constraint is not None and not self.ignore_eos:
                # the grammar ends it: rather than cut a dialog at max_tokens (a defect), let it
                # run into its stream's spare cells, up to half as much again (benchmarks that
                # ignore the end want fixed counts)
                work.budget = max(work.budget, min(self.cells - len(work.tokens), work.budget * 3 // 2))
            slot.work = work
            slot.parts = []
            slot.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            yield from self._accept(slot, firsts[slot.seq], llama_cpp)

    def _sampler(self, request: backend.Request) -> SequenceSampler:
        """The request's sampler: its seeded chain, and its grammar when it is constrained."""
        if request.constraint is not None and self._scratch is None:
            import llama_cpp

            self._scratch = Scratch(llama_cpp.llama_vocab_n_tokens(self._vocab))
        return SequenceSampler(request.sampling, request.seed, self._vocab, request.constraint, self._scratch)

    def _step(self, active: list[_Slot], llama_cpp: Any) -> Iterator[backend.StreamEvent]:
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
                yield backend.StreamFailed(key, f"llama_decode failed ({rc})")
            return
        counters = self.counters
        counters.steps += 1
        counters.step_sequences += len(active)
        counters.step_tokens += len(active)
        ctx = self._ctx
        for i, slot in enumerate(active):
            self._held[slot.seq].append(slot.pending)
            assert slot.sampler is not None
            try:
                token = slot.sampler.sample(ctx, i)
            except GrammarError as exc:
                assert slot.work is not None
                key = slot.work.request.key
                self._drop(slot.seq)
                self._release(slot)
                yield backend.StreamFailed(key, str(exc))
                continue
            yield from self._accept(slot, token, llama_cpp)

    def _accept(self, slot: _Slot, token: int, llama_cpp: Any) -> Iterator[backend.StreamEvent]:
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
            yield backend.StreamChunk(work.request.key, text, stats.completion_tokens, now - stats.started)
        if stats.completion_tokens >= work.budget:
            yield from self._finish(slot, "length")
        else:
            slot.pending = token

    def _finish(self, slot: _Slot, reason: backend.FinishReason) -> Iterator[backend.StreamEvent]:
        work = slot.work
        assert work is not None
        stats = work.stats
        tail = slot.decoder.decode(b"", final=True)
        self._release(slot)
        stats.finish_reason = reason
        stats.elapsed_s = time.perf_counter() - stats.started
        if tail:
            slot.parts.append(tail)
            yield backend.StreamChunk(work.request.key, tail, stats.completion_tokens, stats.elapsed_s)
        yield backend.StreamDone(work.request.key, "".join(slot.parts), stats)

    def _release(self, slot: _Slot) -> None:
        """Free the slot for the next request; its KV stays cached as a prefix source."""
        if slot.sampler is not None:
            slot.sampler.free()
            slot.sampler = None
        slot.work = None

    def _compact(self, slots: list[_Slot]) -> list[_Slot]:
        """Move running sequences down into free lower streams, so their ids are consecutive.

        llama.cpp splits a decode step into one micro-batch per run of consecutive sequence ids,
        and each micro-batch reads every weight. The moved stream is copied whole (bit for bit, so
        the text does not change) and the old one stays cached as a prefix source.
        """
        import llama_cpp

        free = [s for s in slots if s.work is None]
        busy = [s for s in slots if s.work is not None]
        while free and busy and free[0].seq < busy[-1].seq:
            dst, src = free.pop(0), busy.pop()
            llama_cpp.llama_memory_seq_rm(self._mem, dst.seq, -1, -1)
            llama_cpp.llama_memory_seq_cp(self._mem, src.seq, dst.seq, -1, -1)
            self._held[dst.seq] = list(self._held[src.seq])
            self._chunked[dst.seq] = self._chunked[src.seq]
            dst.work, dst.sampler, dst.pending = src.work, src.sampler, src.pending
            dst.parts, dst.decoder = src.parts, src.decoder
            src.work, src.sampler = None, None
            busy.insert(0, dst)
            self.counters.compactions += 1
        return [s for s in slots if s.work is not None]

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
                    if n >= best + MIN_COPY:
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

    def _group(self, pieces: list[_Piece], i: int) -> list[_Piece]:
        """The prompt pieces from ``i`` that go into one llama_decode: one chunk on CPU; on a GPU as
        many (of several sequences) as fit n_batch."""
        if self.chunk > 1:
            return [pieces[i]]
        group: list[_Piece] = []
        room = self.n_batch
        while i + len(group) < len(pieces) and len(pieces[i + len(group)][2]) <= room:
            room -= len(pieces[i + len(group)][2])
            group.append(pieces[i + len(group)])
        return group or [pieces[i]]  # a piece longer than n_batch cannot happen (step <= n_batch)

    def _decode_prompts(
        self,
        prompts: list[tuple[int, list[int], int, int]],
        keys: dict[int, int],
        samplers: dict[int, SequenceSampler],
        firsts: dict[int, int] | None = None,
        skipped: Callable[[int], bool] | None = None,
        failed: dict[int, str] | None = None,
    ) -> Generator[backend.StreamPrompt, None, str | None]:
        """Decode each (seq, tokens, start, end)'s tokens[start:end]; sample a first token where asked.

        On a GPU (``chunk`` 1) the prompts are packed together, up to ``n_batch`` tokens per
        llama_decode. On CPU each llama_decode holds one ``chunk`` of one sequence at a fixed
        position, so a prompt's KV never depends on what else is evaluated (the header's note).
        A sequence's first token is sampled right after the llama_decode that holds its last prompt
        token (the next one overwrites the logits). Yields how far each prompt got (StreamPrompt,
        for the request ``keys`` names) first and then every PROMPT_REPORT_S; returns an error.
        A sequence for which ``skipped`` turns true is read no further and gets no first token;
        one whose grammar allows no first token is put in ``failed``.
        """
        import llama_cpp

        batch = self._batch
        pieces: list[_Piece] = []
        step = self.chunk if self.chunk > 1 else self.n_batch
        done: dict[int, int] = {}
        for seq, tokens, start, end in prompts:
            n = len(tokens)
            for first in range(start, end, step):
                chunk = tokens[first : min(first + step, end)]
                pieces.append((seq, first, chunk, first + len(chunk) == n))
            done[seq] = start
            yield backend.StreamPrompt(keys.get(seq, 0), start, n)
        totals = {seq: len(tokens) for seq, tokens, _, _ in prompts}
        reported = time.perf_counter()
        i = 0
        while i < len(pieces):
            if skipped is not None:
                gone = {seq for seq in totals if done[seq] < totals[seq] and skipped(seq)}
                if gone:
                    pieces = pieces[:i] + [p for p in pieces[i:] if p[0] not in gone]
                    for seq in gone:
                        totals[seq] = done[seq]  # no more progress to report for it
                    if i >= len(pieces):
                        break
            if i and time.perf_counter() - reported >= PROMPT_REPORT_S:
                reported = time.perf_counter()
                for seq, total in totals.items():
                    if done[seq] < total:
                        yield backend.StreamPrompt(keys.get(seq, 0), done[seq], total)
            group = self._group(pieces, i)
            i += len(group)
            n_tokens, ends = 0, []
            for seq, first, chunk, last in group:
                for j, token in enumerate(chunk):
                    k = n_tokens + j
                    batch.token[k] = token
                    batch.pos[k] = first + j
                    batch.n_seq_id[k] = 1
                    batch.seq_id[k][0] = seq
                    batch.logits[k] = 0
                n_tokens += len(chunk)
                if last and seq in samplers:
                    batch.logits[n_tokens - 1] = 1
                    ends.append((seq, n_tokens - 1))
            batch.n_tokens = n_tokens
            rc = llama_cpp.llama_decode(self._ctx, batch)
            if rc != 0:
                return f"llama_decode failed on the prompt ({rc})"
            for seq, _, chunk, _ in group:
                self._held[seq].extend(chunk)
                done[seq] += len(chunk)
                self.counters.prompt_tokens_evaluated += len(chunk)
            for seq, index in ends:
                assert firsts is not None
                try:
                    firsts[seq] = samplers[seq].sample(self._ctx, index)
                except GrammarError as exc:  # a sequence whose grammar allows no first token
                    assert failed is not None
                    failed[seq] = str(exc)
        for seq, _, _, end in prompts:
            # a last, partial chunk is not reusable
            self._chunked[seq] = end // self.chunk * self.chunk
        return None

    def _drop(self, seq: int) -> None:
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self._mem, seq, -1, -1)
        self._held[seq] = []
        self._chunked[seq] = 0


def _cancelled_stats(work: Work) -> backend.GenerationStats:
    stats = work.stats
    stats.finish_reason = "cancelled"
    stats.elapsed_s = 0.0
    return stats


def _cancelled(request: backend.Request) -> bool:
    return request.cancel is not None and request.cancel.is_set()
