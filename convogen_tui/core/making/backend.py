"""The backend contract: what the pipeline, the CLI and the app may ask of a generation backend.

Everything a caller uses is declared here, on :class:`Backend`, with a documented default, so no
caller probes a backend with ``getattr``. Implementations live above core (``convogen_tui.llm``:
llama.cpp in this process, OpenAI-compatible servers) and tests script their own. The stream events
(``StreamStarted`` ... ``StreamFailed``) are the one language every backend's ``run_many`` speaks.
"""

from __future__ import annotations

import hashlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.making.experiment import SamplingSettings
from convogen_tui.core.making.prompts import ChatFormat, PromptParts

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class ModelInfo:
    """Facts about the loaded model that prompts and provenance need."""

    name: str
    path: Path | None
    architecture: str
    chat_template: str | None
    bos_token: str
    eos_token: str
    n_ctx: int
    n_ctx_train: int
    size_bytes: int = 0
    fingerprint: str = ""
    gpu_layers: int = 0
    n_layers: int = 0
    gpu_offload_supported: bool = False
    backend: str = "llama.cpp"
    adds_bos: bool = True
    remote: str = ""  # where a served model runs (its endpoints); empty for an in-process model

    @property
    def chat_format(self) -> ChatFormat:
        return ChatFormat(
            self.name, self.chat_template, self.bos_token, self.eos_token, self.adds_bos, bool(self.remote)
        )

    @property
    def offload_summary(self) -> str:
        if self.remote:
            return self.remote
        if not self.gpu_offload_supported:
            return "CPU (llama.cpp built without GPU support)"
        if self.gpu_layers == 0:
            return "CPU (GPU offload off)"
        total = self.n_layers or self.gpu_layers
        return f"GPU: {min(self.gpu_layers, total)}/{total} layers offloaded"


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: FinishReason = "stop"
    started: float = field(default_factory=time.perf_counter)
    first_token_s: float | None = None
    elapsed_s: float = 0.0
    endpoint: str | None = None  # the server that produced the text, for remote backends
    prompt_format: str | None = None  # set when the backend sent another form than the pipeline chose
    constrained: bool = False  # the backend enforced the request's Constraint while sampling

    @property
    def tokens_per_second(self) -> float:
        decode = self.elapsed_s - (self.first_token_s or 0.0)
        if self.completion_tokens <= 1 or decode <= 0:
            return self.completion_tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return (self.completion_tokens - 1) / decode


class Generation:
    """One streaming completion: iterate for text chunks, or call text() to wait for all of it."""

    def __init__(self, chunks: Iterator[str], stats: GenerationStats) -> None:
        self._chunks = chunks
        self.stats = stats
        self._parts: list[str] = []
        self._done = False

    def __iter__(self) -> Iterator[str]:
        for chunk in self._chunks:
            self._parts.append(chunk)
            yield chunk
        self._done = True

    def close(self) -> None:
        """Stop generating now (the backend frees the sequence); text() returns what came so far."""
        if isinstance(self._chunks, Generator):
            self._chunks.close()
        self._done = True

    def text(self) -> str:
        if not self._done:
            for _ in self:
                pass
        return "".join(self._parts)


class Backend(ABC):
    """A loaded model that counts tokens and streams completions of raw prompt text.

    Required: ``info``, ``count_tokens`` and ``stream``. The rest are optional capabilities with
    defaults that suit a backend running one stream at a time; a backend overrides what it offers.
    """

    info: ModelInfo
    #: route even a single stream through run_many (a remote backend's retries and failover live there)
    always_run_many: ClassVar[bool] = False
    #: count_tokens guesses (a server without a tokenize route): the app says "~" before counts
    token_counts_estimated: bool = False

    @abstractmethod
    def count_tokens(self, text: str) -> int: ...

    @abstractmethod
    def stream(self, request: Request, cancel: threading.Event | None = None) -> Generation: ...

    def run_many(
        self, next_request: NextRequest, cancel: threading.Event, parallel: int
    ) -> Iterator[StreamEvent]:
        """Serve requests as slots free up (see :func:`run_sequential` for the contract)."""
        return run_sequential(self, next_request, cancel)

    @property
    def warnings(self) -> list[str]:
        """Things the user should know before a run (a server that will be retried, ...)."""
        return []

    def auto_parallel(self, n_jobs: int, stream_tokens: int | None = None) -> tuple[int, str]:
        """Streams to run at once when the user does not say, and why (printed as given).

        ``stream_tokens`` is the most tokens one request of the run holds (prompt + new tokens,
        :meth:`Pipeline.stream_tokens`); None means the model's whole context.
        """
        return 1, "one stream at a time"

    def memory_for(self, parallel: int, stream_tokens: int | None = None) -> int | None:
        """Bytes ``parallel`` streams of ``stream_tokens`` need beyond the model (the KV cache).

        None when the backend holds no such memory (a remote server).
        """
        return None

    def memory_available(self) -> int | None:
        """Bytes free for :meth:`memory_for` (VRAM or RAM); None when unknown."""
        return None

    def reserve(self, parallel: int, stream_tokens: int | None = None) -> None:  # noqa: B027
        """Get ready for a run of ``parallel`` streams of up to ``stream_tokens`` tokens each.

        A backend with a KV cache sizes it here, before the first request, so a run that cannot
        fit fails at once (ModelError) and the cache holds what the run needs. Default: nothing.
        """

    def constraint_support(self) -> Literal["grammar", "json_schema", ""]:
        """How this backend enforces a request's :class:`Constraint`.

        ``"grammar"``: every constraint, as a GBNF grammar while sampling (llama.cpp, llama-server);
        ``"json_schema"``: JSON constraints only, through structured outputs; ``""``: none, so the
        caller validates the text (and retries). Default: none. A backend that enforces them reads
        ``Request.constraint`` in ``run_many`` (``stream`` takes none), so callers send constrained
        requests through ``run_many``.
        """
        return ""

    def set_threads(self, n_threads: int) -> None:  # noqa: B027  (optional: remote backends ignore it)
        """CPU threads for evaluating and decoding, for backends that compute in this process."""

    def describe(self) -> str:
        """One short line for status bars: the model, its context and where it runs."""
        info = self.info
        name = info.name if len(info.name) <= 24 else info.name[:23] + "…"
        where = "CPU" if info.offload_summary.startswith("CPU") else info.offload_summary
        return f"{name} · ctx {info.n_ctx} · {where}"

    def close(self) -> None:  # noqa: B027  (optional: most backends hold nothing to free)
        """Free what the backend holds (model, connections)."""


@dataclass(frozen=True)
class ParallelChoice:
    """How many streams a run uses, why, and the memory that takes: decided once, shown as used."""

    n: int
    reason: str
    memory_bytes: int | None = None

    def describe(self) -> str:
        line = f"parallel: {self.n} conversation(s) at once ({self.reason})"
        if self.memory_bytes and self.n > 1:
            line += f"; KV cache {self.memory_bytes / 2**20:,.0f} MiB"
        return line


def choose_parallel(
    backend: Backend, requested: int | None, n_jobs: int, stream_tokens: int | None = None
) -> ParallelChoice:
    """The one place a run's stream count is decided (CLI and app alike).

    ``requested`` (``--parallel N``; None for ``auto``) wins over the backend's own choice, but
    never past what memory allows: a request whose KV cache cannot fit in free memory is lowered,
    saying so, before the backend is asked to allocate it. ``stream_tokens`` sizes each stream's
    KV cache (see :meth:`Backend.auto_parallel`).
    """
    if requested is not None and requested < 1:
        raise ConvogenError("--parallel must be at least 1")
    if requested is None:
        n, reason = backend.auto_parallel(n_jobs, stream_tokens)
    else:
        n, reason = requested, "--parallel"
    n = max(1, n)
    if requested is not None:
        # checked on what was asked, before the job count caps it: the user learns what fits
        n, reason = _fit_memory(backend, n, reason, stream_tokens)
    if n_jobs < n:
        n, reason = max(1, n_jobs), f"{reason}; only {n_jobs} job(s)"
    return ParallelChoice(n, reason, backend.memory_for(n, stream_tokens))


def _fit_memory(backend: Backend, n: int, reason: str, stream_tokens: int | None) -> tuple[int, str]:
    """Lower ``n`` to the streams whose KV cache fits free memory, saying so; refuse if none fits."""
    available = backend.memory_available()
    need = backend.memory_for(n, stream_tokens)
    if available is None or need is None or need <= available:
        return n, reason
    low, high = 1, n  # memory grows with the stream count: the largest count that fits
    while low < high:
        mid = (low + high + 1) // 2
        if (backend.memory_for(mid, stream_tokens) or 0) <= available:
            low = mid
        else:
            high = mid - 1
    one = backend.memory_for(1, stream_tokens) or 0
    if one > available:
        raise ConvogenError(
            f"even one conversation's KV cache ({one / 2**20:,.0f} MiB) does not fit the "
            f"{available / 2**20:,.0f} MiB of free memory; lower n_ctx in expt-setup.json or free memory"
        )
    return low, (
        f"--parallel {n} would need {need / 2**20:,.0f} MiB of KV cache but only "
        f"{available / 2**20:,.0f} MiB is free, so lowered to {low}"
    )


# constrained output -----------------------------------------------------------------------
@dataclass(frozen=True)
class Constraint:
    """What a pass's output must look like, for backends that can enforce it while sampling.

    ``gbnf`` is a llama.cpp grammar (root rule ``root``): the local engine samples each sequence
    through it, llama-server takes it as ``grammar``. ``json_schema`` is set when the output is a
    JSON object: servers with structured outputs take the schema instead. ``name`` says what it
    constrains (``dialog``, ``restyle``, ``judge``) in status lines and provenance.
    """

    name: str
    gbnf: str
    json_schema: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.gbnf.encode()).hexdigest()


# many streams at once ----------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """One prompt to complete; ``key`` lets the caller match events to its job.

    ``parts`` (instruction, system, cue) let a remote backend send chat messages when the server
    only offers chat or applies its own template; backends that take text ignore them.
    ``constraint`` (a grammar) shapes the output where the backend supports it.
    ``cancel`` stops this request alone (the others keep running); it ends with StreamDone and
    finish_reason "cancelled". The run's own cancel still stops everything.
    """

    key: int
    prompt: str
    seed: int
    sampling: SamplingSettings
    parts: PromptParts | None = None
    cancel: threading.Event | None = field(default=None, compare=False)
    constraint: Constraint | None = None  # None: the model writes freely


@dataclass(frozen=True)
class StreamStarted:
    """A request began streaming; a backend that retries it elsewhere sends this again (text restarts)."""

    key: int
    prompt_tokens: int


@dataclass(frozen=True)
class StreamPrompt:
    """Reading a prompt before its first token: ``done`` of ``total`` prompt tokens evaluated.

    A backend that evaluates prompts itself (llama.cpp) sends these while a long prompt is read, so
    a user sees "reading prompt 812/1249" instead of a stream stuck at zero tokens. Optional:
    callers must not wait for one.
    """

    key: int
    done: int
    total: int


@dataclass(frozen=True)
class StreamChunk:
    key: int
    text: str
    n_tokens: int
    elapsed_s: float


@dataclass(frozen=True)
class StreamDone:
    key: int
    text: str
    stats: GenerationStats


@dataclass(frozen=True)
class StreamFailed:
    key: int
    message: str


StreamEvent = StreamStarted | StreamPrompt | StreamChunk | StreamDone | StreamFailed
NextRequest = Callable[[], "Request | None"]


def run_sequential(
    backend: Backend, next_request: NextRequest, cancel: threading.Event
) -> Iterator[StreamEvent]:
    """Serve requests one at a time through ``backend.stream``; the fallback for any backend.

    Backends that can run many streams at once provide ``run_many(next_request, cancel,
    parallel)`` with the same contract: pull a request whenever a slot is free (None means nothing
    waits now, since a finishing stream may queue more; stop when None comes with no stream
    running, or when ``cancel`` is set), and end every request with exactly one StreamDone
    (finish_reason "cancelled" if cut short) or StreamFailed. A request's own ``cancel`` ends
    only that request.
    """
    while not cancel.is_set():
        request = next_request()
        if request is None:
            return
        try:
            generation = backend.stream(request, cancel)
        except ConvogenError as exc:
            yield StreamFailed(request.key, str(exc))
            continue
        stats = generation.stats
        yield StreamStarted(request.key, stats.prompt_tokens)
        try:
            for chunk in generation:
                yield StreamChunk(
                    request.key, chunk, stats.completion_tokens, time.perf_counter() - stats.started
                )
                if request.cancel is not None and request.cancel.is_set():
                    generation.close()
                    stats.finish_reason = "cancelled"
                    stats.elapsed_s = time.perf_counter() - stats.started
                    break
        except ConvogenError as exc:  # failed mid-stream: this request ends, the run goes on
            yield StreamFailed(request.key, str(exc))
            continue
        yield StreamDone(request.key, generation.text(), stats)
