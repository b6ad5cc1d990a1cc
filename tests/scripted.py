"""A scripted backend: the backend contract with answers queued by the test, no model at all.

Pipeline, cancel, failover and app-flow tests run on it in milliseconds. It speaks the same stream
events as llama.cpp and the OpenAI-compatible backend, so what passes here exercises the real
pipeline, store and app code; only the text comes from a script instead of a model.

    backend = ScriptedBackend([Script("SocBot: hi\\nUser: no"), Script(fail="server said no")])
    backend = ScriptedBackend(default=Script(echo=True))       # answer every prompt with itself
    gate = threading.Event(); Script("a b c d", hold_after=2, gate=gate)  # stops after "a b " until set
    Script(prompt_steps=2, hold_after=0, gate=gate)  # reports reading its prompt, then waits
    ScriptedBackend(constraint_support="grammar")  # accepts grammars; .constraints records them
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, cast

from convogen_tui.core.errors import ModelError, Problem
from convogen_tui.core.making import backend
from convogen_tui.core.making.backend import Backend

EIGHT_TURNS = "\n".join(f"SocBot: point {i}, with reasons.\nUser: reply {i}, unconvinced." for i in range(8))


@dataclass
class Script:
    """One answer. ``text`` is cut into word chunks (a chunk per token) unless ``chunks`` says."""

    text: str = EIGHT_TURNS
    chunks: list[str] | None = None
    echo: bool = False  # answer with the prompt itself
    fail: str | None = None  # fail with this message after ``fail_after`` chunks
    fail_after: int = 0
    finish_reason: backend.FinishReason = "stop"
    hold_after: int | None = None  # after this many chunks wait for ``gate`` (or a cancel)
    gate: threading.Event | None = None
    delay_s: float = 0.0  # pause before each chunk (for demos; tests should use gates)
    prompt_steps: int = 0  # report reading the prompt in this many steps (StreamPrompt) first

    def pieces(self, prompt: str) -> list[str]:
        if self.chunks is not None:
            return list(self.chunks)
        return re.findall(r"\S+\s*|\s+", prompt if self.echo else self.text)


@dataclass
class _Live:
    request: backend.Request
    script: Script
    pieces: list[str]
    stats: backend.GenerationStats
    sent: int = 0
    parts: list[str] = field(default_factory=list)
    cut: bool = False  # the script is longer than max_tokens: it ends there, as "length"


class ScriptedBackend(Backend):
    """Answers from a queue of scripts (then ``default``), ``slots`` streams interleaved at once."""

    def __init__(
        self,
        scripts: Iterable[Script] = (),
        default: Script | Callable[[str], Script] | None = None,
        slots: int = 1,
        n_ctx: int = 4096,
        name: str = "scripted",
        chat_template: str | None = None,
        memory_per_stream: int | None = None,
        memory_free: int | None = None,
        constraint_support: Literal["grammar", "json_schema", ""] = "",
    ) -> None:
        self.scripts: deque[Script] = deque(scripts)
        self.default = default if default is not None else Script()
        self.slots = slots
        self.memory_per_stream = memory_per_stream
        self.memory_free = memory_free
        self.requests: list[backend.Request] = []  # every request, in order (its constraint, sampling)
        self.prompts: list[str] = []  # every prompt asked for, in order
        self.seeds: list[int] = []
        self.max_running = 0  # the most streams that ran at once
        self.reserved: list[tuple[int, int | None]] = []  # every reserve(parallel, stream_tokens)
        self.support: Literal["grammar", "json_schema", ""] = constraint_support
        self.constraints: list[backend.Constraint | None] = []  # every request's constraint, in order
        self.info = backend.ModelInfo(
            name=name,
            path=None,
            architecture="llama",
            chat_template=chat_template,
            bos_token="<s>",
            eos_token="</s>",
            n_ctx=n_ctx,
            n_ctx_train=n_ctx,
        )

    # the contract ---------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(text.split()) + 1

    def auto_parallel(self, n_jobs: int, stream_tokens: int | None = None) -> tuple[int, str]:
        return self.slots, "scripted slots"

    def memory_for(self, parallel: int, stream_tokens: int | None = None) -> int | None:
        return None if self.memory_per_stream is None else self.memory_per_stream * parallel

    def memory_available(self) -> int | None:
        return self.memory_free

    def reserve(self, parallel: int, stream_tokens: int | None = None) -> None:
        self.reserved.append((parallel, stream_tokens))

    def constraint_support(self) -> Literal["grammar", "json_schema", ""]:
        return self.support

    def stream(self, request: backend.Request, cancel: threading.Event | None = None) -> backend.Generation:
        live = self._begin(request)
        cancel = cancel or threading.Event()

        def chunks() -> Iterator[str]:
            while live.sent < len(live.pieces):
                event = self._next(live, cancel)
                if isinstance(event, backend.StreamFailed):
                    raise ModelError(Problem(None, event.message))
                if event is None:
                    live.stats.finish_reason = "cancelled"
                    return
                yield event.text
            self._end(live)

        return backend.Generation(chunks(), live.stats)

    def run_many(
        self, next_request: backend.NextRequest, cancel: threading.Event, parallel: int
    ) -> Iterator[backend.StreamEvent]:
        """Round robin: each step gives one chunk to every running stream, pulling when a slot frees."""
        limit = max(1, min(parallel, self.slots))
        running: list[_Live] = []
        while not cancel.is_set():
            while len(running) < limit:
                request = next_request()
                if request is None:
                    break  # nothing waits now; a finishing stream may queue more
                live = self._begin(request)
                running.append(live)
                yield backend.StreamStarted(request.key, live.stats.prompt_tokens)
                total = live.stats.prompt_tokens
                for step in range(live.script.prompt_steps):
                    yield backend.StreamPrompt(request.key, total * step // live.script.prompt_steps, total)
            if not running:
                return
            self.max_running = max(self.max_running, len(running))
            for live in list(running):
                own = live.request.cancel
                if own is not None and own.is_set():
                    running.remove(live)
                    live.stats.finish_reason = "cancelled"
                    yield backend.StreamDone(live.request.key, "".join(live.parts), live.stats)
                    continue
                if live.sent >= len(live.pieces):
                    running.remove(live)
                    self._end(live)
                    yield backend.StreamDone(live.request.key, "".join(live.parts), live.stats)
                    continue
                event = self._next(live, cancel)
                if event is None:
                    break  # held at a gate and cancelled: the loop above ends it
                if isinstance(event, backend.StreamFailed):
                    running.remove(live)
                yield event
        for live in running:
            live.stats.finish_reason = "cancelled"
            yield backend.StreamDone(live.request.key, "".join(live.parts), live.stats)

    # the script -----------------------------------------------------------------------------
    def _begin(self, request: backend.Request) -> _Live:
        self.requests.append(request)
        self.prompts.append(request.prompt)
        self.seeds.append(request.seed)
        self.constraints.append(request.constraint)
        script = self.scripts.popleft() if self.scripts else self.default
        if not isinstance(script, Script):
            script = cast(Callable[[str], Script], script)(request.prompt)
        stats = backend.GenerationStats(prompt_tokens=self.count_tokens(request.prompt))
        stats.constrained = request.constraint is not None and bool(self.support)
        pieces = script.pieces(request.prompt)
        limit = request.sampling.max_tokens
        return _Live(request, script, pieces[:limit], stats, cut=len(pieces) > limit)

    def _next(
        self, live: _Live, cancel: threading.Event
    ) -> backend.StreamChunk | backend.StreamFailed | None:
        """The next chunk of one stream; None when cancelled while held at the gate."""
        script = live.script
        if script.fail is not None and live.sent >= script.fail_after:
            live.sent = len(live.pieces)
            return backend.StreamFailed(live.request.key, script.fail)
        if script.hold_after is not None and live.sent == script.hold_after and script.gate is not None:
            own = live.request.cancel
            while not script.gate.wait(0.01):
                if cancel.is_set() or (own is not None and own.is_set()):
                    return None
        if script.delay_s:
            time.sleep(script.delay_s)
        text = live.pieces[live.sent]
        live.sent += 1
        live.parts.append(text)
        stats = live.stats
        stats.completion_tokens = live.sent
        now = time.perf_counter() - stats.started
        if stats.first_token_s is None:
            stats.first_token_s = now
        stats.elapsed_s = now
        return backend.StreamChunk(live.request.key, text, live.sent, now)

    def _end(self, live: _Live) -> None:
        live.stats.finish_reason = "length" if live.cut else live.script.finish_reason
        live.stats.elapsed_s = time.perf_counter() - live.stats.started


class ScriptedBatchBackend(ScriptedBackend):
    """The scripted backend as a batched one: even a single stream goes through ``run_many``, so
    ``prompt_steps`` and per-request cancel behave as with llama.cpp's engine."""

    always_run_many = True
