"""What the pipeline needs from a generation backend: model facts, token counts, a token stream."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from convogen_tui.core.experiment import SamplingSettings
from convogen_tui.core.prompts import ChatFormat, PromptParts

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
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        self._done = True

    def text(self) -> str:
        if not self._done:
            for _ in self:
                pass
        return "".join(self._parts)


@runtime_checkable
class Backend(Protocol):
    """A loaded model that can count tokens and stream completions of raw prompt text."""

    info: ModelInfo

    def count_tokens(self, text: str) -> int: ...

    def stream(
        self,
        prompt: str,
        sampling: SamplingSettings,
        seed: int,
        cancel: threading.Event | None = None,
    ) -> Generation: ...


# many streams at once ----------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """One prompt to complete; ``key`` lets the caller match events to its job.

    ``parts`` (instruction, system, cue) let a remote backend send chat messages when the server
    only offers chat or applies its own template; backends that take text ignore them.
    ``cancel`` stops this request alone (the others keep running); it ends with StreamDone and
    finish_reason "cancelled". The run's own cancel still stops everything.
    """

    key: int
    prompt: str
    seed: int
    sampling: SamplingSettings
    parts: PromptParts | None = None
    cancel: threading.Event | None = field(default=None, compare=False)


@dataclass(frozen=True)
class StreamStarted:
    """A request began streaming; a backend that retries it elsewhere sends this again (text restarts)."""

    key: int
    prompt_tokens: int


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


StreamEvent = StreamStarted | StreamChunk | StreamDone | StreamFailed
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
    from convogen_tui.core.errors import ConvogenError

    while not cancel.is_set():
        request = next_request()
        if request is None:
            return
        try:
            generation = backend.stream(request.prompt, request.sampling, request.seed, cancel)
        except ConvogenError as exc:
            yield StreamFailed(request.key, str(exc))
            continue
        stats = generation.stats
        yield StreamStarted(request.key, stats.prompt_tokens)
        for chunk in generation:
            yield StreamChunk(
                request.key, chunk, stats.completion_tokens, time.perf_counter() - stats.started
            )
            if request.cancel is not None and request.cancel.is_set():
                generation.close()
                stats.finish_reason = "cancelled"
                stats.elapsed_s = time.perf_counter() - stats.started
                break
        yield StreamDone(request.key, generation.text(), stats)
