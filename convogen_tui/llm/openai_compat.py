"""OpenAI-compatible inference servers (llama-server, vLLM, llama_cpp.server) as a backend.

Requests are spread over every endpoint with ``concurrency`` in flight on each. A request that
fails on one endpoint (connection lost, HTTP 5xx/429, a stream that ends without a finish reason,
silence past the timeout) is retried on another after a backoff, and the caller sees exactly one
StreamDone or StreamFailed per request: files are written once, never from half an answer.

The prompt is the text the local backend would build, sent to ``/completions``. Only when the
server's chat template cannot be known (and the model is not a Llama-2 chat model) are the parts
sent as chat messages, the cue opening the assistant's answer. The API key comes from the
environment and is only ever put in the Authorization header.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

from convogen_tui.core.errors import ModelError, Problem
from convogen_tui.core.keeping.redact import redact, register_secret
from convogen_tui.core.making.backend import (
    Backend,
    Constraint,
    FinishReason,
    Generation,
    GenerationStats,
    ModelInfo,
    NextRequest,
    Request,
    StreamChunk,
    StreamDone,
    StreamEvent,
    StreamFailed,
    StreamStarted,
)

API_KEY_VARS = ("CONVOGEN_API_KEY", "OPENAI_API_KEY")
KEY_HINT = "set CONVOGEN_API_KEY or OPENAI_API_KEY to the server's key"
URL_HINT = "check --base-url (it usually ends in /v1) and that the server is running"

ErrorKind = Literal["retry", "interrupted", "endpoint", "request", "no-completions"]
# "grammar": llama-server and llama_cpp.server; "structured_outputs" / "guided": vLLM (>= 0.10.2 / older)
ConstraintMode = Literal["grammar", "structured_outputs", "guided", ""]
CONSTRAINT_FIELDS = {
    "grammar": "'grammar' (llama.cpp server)",
    "structured_outputs": "'structured_outputs' (vLLM)",
    "guided": "'guided_grammar' (vLLM)",
}
# a server's refusal that is about the grammar we sent: it then runs unconstrained
_GRAMMAR_REFUSAL = re.compile(r"grammar|guided|structured|schema|gbnf|xgrammar", re.I)


def api_key_from_env() -> str | None:
    for name in API_KEY_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def display_url(url: str) -> str:
    """The URL without credentials or query, safe for messages, logs and provenance."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


class EndpointError(Exception):
    """One failed attempt; ``kind`` says whether to retry elsewhere, drop the endpoint, or give up."""

    def __init__(self, message: str, kind: ErrorKind = "retry", hint: str | None = None) -> None:
        super().__init__(redact(message))  # a server may echo the Authorization header back
        self.kind = kind
        self.hint = hint

    def problem(self) -> Problem:
        return Problem(None, str(self), hint=self.hint)


@dataclass
class Endpoint:
    """One server: its client, health (backoff after failures) and throughput so far."""

    url: str
    client: httpx.Client
    concurrency: int
    # completions stream over fresh connections, so a stuck one can be cut at its socket
    stream_client: httpx.Client | None = None
    failures: int = 0
    down_until: float = 0.0
    disabled: str | None = None
    chat_only: bool = False
    tokenize_route: str | None = None
    tokenize_checked: bool = False
    # the request field this server takes a grammar in (see ``_constraint_mode``); "" for none
    constraint_mode: ConstraintMode = ""
    in_flight: int = 0
    completed: int = 0
    tokens: int = 0
    retried: int = 0

    @property
    def label(self) -> str:
        return display_url(self.url)

    @property
    def root(self) -> str:
        """Server root for non-OpenAI routes (/props, /tokenize): the base URL without /v1."""
        base = self.url.rstrip("/")
        return base[: -len("/v1")] if base.endswith("/v1") else base

    def available(self, now: float) -> bool:
        return self.disabled is None and now >= self.down_until and self.in_flight < self.concurrency


@dataclass
class _Pending:
    request: Request
    attempts: int = 0
    failed_on: set[str] = field(default_factory=set)
    last_error: str = ""


@dataclass
class _Attempt:
    pending: _Pending
    endpoint: Endpoint
    response: httpx.Response | None = None
    last_token: float = field(default_factory=time.monotonic)  # when it last made progress
    stalled: bool = False  # the watchdog cut it: no token for the stall timeout
    sock: socket.socket | None = None  # the stream's own connection (see ``trace``)
    aborted: bool = False

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx's trace hook: keep the new connection's socket, so abort can cut it."""
        if event == "connection.connect_tcp.complete":
            stream = info.get("return_value")
            self.sock = stream.get_extra_info("socket") if stream is not None else None
            if self.aborted:
                self._shutdown()

    def abort(self) -> None:
        """Cut the connection so a worker blocked on a read returns at once, even before the
        server sent its headers (a request queued or stuck on the server)."""
        self.aborted = True
        self._shutdown()
        if self.response is not None:
            with contextlib.suppress(Exception):
                self.response.close()

    def _shutdown(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)


class OpenAIBackend(Backend):
    """Completions from one or more OpenAI-compatible servers, many requests at once."""

    always_run_many = True  # retries and failover live in run_many, even for one stream at a time

    def __init__(
        self,
        base_urls: Sequence[str],
        api_model: str | None = None,
        concurrency: int = 4,
        api: Literal["auto", "completions", "chat"] = "auto",
        timeout_s: float = 120.0,
        n_ctx: int = 4096,
        api_key: str | None = None,
        max_attempts: int | None = None,
        backoff_s: float = 0.5,
        connect_timeout_s: float = 5.0,
        stall_timeout_s: float = 60.0,
    ) -> None:
        urls = [u.strip() for u in base_urls if u and u.strip()]
        if not urls:
            raise ModelError(
                Problem(
                    None,
                    "the openai backend needs at least one server URL",
                    hint='pass --base-url http://HOST:PORT/v1 or set "backend": {"base_urls": [...]}',
                )
            )
        for url in urls:
            if urlsplit(url).scheme not in ("http", "https"):
                raise ModelError(Problem(None, f"not an http(s) URL: {display_url(url)}", hint=URL_HINT))
        key = api_key if api_key is not None else api_key_from_env()
        register_secret(key, "CONVOGEN_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency)
        no_reuse = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=0)
        self.endpoints = [
            Endpoint(
                url.rstrip("/"),
                httpx.Client(headers=headers, timeout=timeout, limits=limits),
                concurrency,
                httpx.Client(headers=headers, timeout=timeout, limits=no_reuse),
            )
            for url in dict.fromkeys(urls)
        ]
        self.api = api
        self.timeout_s = timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.backoff_s = backoff_s
        self.max_attempts = max_attempts or max(3, 2 * len(self.endpoints))
        self._warnings: list[str] = []
        self.token_counts_estimated = False
        self.model, served_ctx, props = self._discover(api_model)
        self.info = ModelInfo(
            name=self.model,
            path=None,
            architecture=str(props.get("architecture") or "unknown"),
            chat_template=props.get("chat_template") or None,
            bos_token=str(props.get("bos_token") or ""),
            eos_token=str(props.get("eos_token") or ""),
            n_ctx=served_ctx or n_ctx,
            n_ctx_train=served_ctx or n_ctx,
            backend="openai",
            remote=f"{len(self.endpoints)} endpoint(s) x {concurrency}: "
            + ", ".join(e.label for e in self.endpoints),
        )

    @property
    def slots(self) -> int:
        """Requests in flight when every endpoint is busy: concurrency x endpoints."""
        return sum(e.concurrency for e in self.endpoints)

    @property
    def warnings(self) -> list[str]:
        return self._warnings

    def auto_parallel(self, n_jobs: int, stream_tokens: int | None = None) -> tuple[int, str]:
        """As many requests as the servers take at once."""
        return self.slots, f"{len(self.endpoints)} server(s) x concurrency; --concurrency to change"

    def describe(self) -> str:
        name = self.info.name if len(self.info.name) <= 24 else self.info.name[:23] + "…"
        urls = ", ".join(e.label.removeprefix("http://").removeprefix("https://") for e in self.endpoints)
        return f"served {name} · ctx {self.info.n_ctx} · {urls} (x{self.slots})"

    # discovery ---------------------------------------------------------------------------
    def _discover(self, api_model: str | None) -> tuple[str, int, dict[str, Any]]:
        """Ask every endpoint what it serves; unreachable ones are warned about and retried later."""
        served: dict[str, list[str]] = {}
        ctx = 0
        errors: list[EndpointError] = []
        for ep in self.endpoints:
            try:
                data = self._get_json(ep, f"{ep.url}/models")
            except EndpointError as exc:
                if exc.kind != "retry":
                    raise ModelError(exc.problem()) from None
                errors.append(exc)
                self._mark_failed(ep)
                continue
            rows = data.get("data") if isinstance(data, dict) else None
            rows = rows if isinstance(rows, list) else []
            ep.constraint_mode = self._constraint_mode(ep, rows)
            served[ep.label] = [str(r.get("id")) for r in rows if isinstance(r, dict) and r.get("id")]
            for r in rows:
                if isinstance(r, dict) and isinstance(r.get("max_model_len"), int):
                    ctx = ctx or r["max_model_len"]
        if not served:
            raise ModelError(errors[0].problem())
        for exc in errors:
            self._warnings.append(f"{exc}; the run will retry it")
        names = list(dict.fromkeys(n for ns in served.values() for n in ns))
        if api_model is None:
            if len(names) > 1:
                raise ModelError(
                    Problem(
                        None,
                        f"the servers offer several models ({', '.join(names)})",
                        hint='choose one with --api-model or "api_model" in the backend block',
                    )
                )
            api_model = names[0] if names else "default"
        for label, models in served.items():
            if models and api_model not in models:
                raise ModelError(
                    Problem(
                        None,
                        f"{label} does not serve model '{api_model}' (it serves {', '.join(models)})",
                        hint="every endpoint must serve the same model; fix --api-model or the URLs",
                    )
                )
        live = next(ep for ep in self.endpoints if ep.label in served)
        props = self._props(live)
        settings = props.get("default_generation_settings")
        if isinstance(settings, dict) and isinstance(settings.get("n_ctx"), int):
            ctx = settings["n_ctx"]
        return api_model, ctx, props

    def _constraint_mode(self, ep: Endpoint, rows: list[Any]) -> ConstraintMode:
        """Which field this server reads a grammar from, told by what it says about itself.

        llama-server answers /props; llama_cpp.server lists its models as owned by "me"; vLLM as
        owned by "vllm" (with /version: structured_outputs from 0.10.2, guided_grammar before).
        """
        owners = {str(r.get("owned_by", "")) for r in rows if isinstance(r, dict)}
        if "vllm" in owners:
            return "structured_outputs" if self._vllm_version(ep) >= (0, 10, 2) else "guided"
        if owners & {"llamacpp", "me"} or self._props(ep):
            return "grammar"
        return ""

    def _vllm_version(self, ep: Endpoint) -> tuple[int, ...]:
        try:
            version = str(ep.client.get(f"{ep.root}/version").json().get("version", ""))
        except (httpx.HTTPError, ValueError, AttributeError):
            return (0,)
        numbers = re.findall(r"\d+", version)[:3]
        return tuple(int(n) for n in numbers) or (0,)

    def constraint_support(self) -> Literal["grammar", "json_schema", ""]:
        """ "grammar" when every server that answered takes one (llama.cpp servers, vLLM)."""
        answered = [ep for ep in self.endpoints if ep.disabled is None]
        return "grammar" if answered and all(ep.constraint_mode for ep in answered) else ""

    def _props(self, ep: Endpoint) -> dict[str, Any]:
        """llama-server's /props holds the chat template, so the prompt can be the local text."""
        try:
            response = ep.client.get(f"{ep.root}/props")
            data = response.json() if response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _get_json(self, ep: Endpoint, url: str) -> Any:
        try:
            response = ep.client.get(url)
        except httpx.HTTPError as exc:
            raise self._transport_error(ep, exc, 0) from None
        if response.status_code != 200:
            raise self._status_error(ep, response, what="/models")
        try:
            return response.json()
        except ValueError:
            raise EndpointError(f"{ep.label}/models did not answer JSON", "endpoint", URL_HINT) from None

    # errors ------------------------------------------------------------------------------
    def _transport_error(self, ep: Endpoint, exc: Exception, chunks: int) -> EndpointError:
        if isinstance(exc, httpx.ConnectTimeout):
            return EndpointError(f"no answer from {ep.label} (connect timed out)", hint=URL_HINT)
        if isinstance(exc, httpx.ConnectError):
            return EndpointError(f"cannot reach {ep.label} ({_reason(exc)})", hint=URL_HINT)
        if isinstance(exc, httpx.ReadTimeout):
            return EndpointError(
                f"{ep.label} sent nothing for {self._read_timeout():g} s",
                hint="raise timeout_s / stall_timeout_s (--stall-timeout) if the server is only slow",
            )
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
            return EndpointError(f"{ep.label} closed the connection mid-answer (after {chunks} chunk(s))")
        return EndpointError(f"{ep.label}: {type(exc).__name__} {_reason(exc)}")

    def _status_error(self, ep: Endpoint, response: httpx.Response, what: str) -> EndpointError:
        code = response.status_code
        detail = _detail(response)
        if code in (401, 403):
            return EndpointError(
                f"{ep.label} refused the request (HTTP {code}: {detail or 'invalid or missing API key'})",
                "endpoint",
                KEY_HINT,
            )
        if code in (404, 405):
            kind: ErrorKind = "no-completions" if what == "/completions" else "endpoint"
            return EndpointError(f"{ep.label} has no {what} route (HTTP {code})", kind, URL_HINT)
        if code in (408, 409, 429) or code >= 500:
            return EndpointError(f"{ep.label} answered HTTP {code}{f': {detail}' if detail else ''}")
        return EndpointError(
            f"{ep.label} rejected the request (HTTP {code}{f': {detail}' if detail else ''})",
            "request",
            'if the prompt is too long, lower "max_tokens" or serve the model with a larger context',
        )

    def _read_timeout(self) -> float:
        """Silence allowed while streaming. The stall watchdog (run_many) cuts a silent stream at
        stall_timeout_s; this read timeout is only its backstop, a second later."""
        return min(self.timeout_s, self.stall_timeout_s + 1.0)

    def _stall_error(self, ep: Endpoint) -> EndpointError:
        return EndpointError(
            f"{ep.label} sent no token for {self.stall_timeout_s:g} s",
            hint="raise stall_timeout_s in the backend block (or --stall-timeout) if the server is only slow",
        )

    def _mark_failed(self, ep: Endpoint) -> None:
        ep.failures += 1
        ep.down_until = time.monotonic() + min(self.backoff_s * 2 ** (ep.failures - 1), 30.0)

    # tokens ------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Exact through the server's tokenize route when it has one, else ~4 characters a token."""
        for ep in self.endpoints:
            if ep.disabled is None:
                count = self._tokenize(ep, text)
                if count is not None:
                    return count
        self.token_counts_estimated = True
        return max(1, len(text) // 4)

    def _tokenize(self, ep: Endpoint, text: str) -> int | None:
        routes = {
            # llama-server and vLLM
            "/tokenize": {"content": text, "prompt": text, "model": self.model, "add_special": True},
            "/extras/tokenize": {"input": text, "model": self.model},  # llama_cpp.server
        }
        if ep.tokenize_route is not None:
            routes = {ep.tokenize_route: routes[ep.tokenize_route]}
        elif ep.tokenize_checked:
            return None
        for route, body in routes.items():
            try:
                response = ep.client.post(f"{ep.root}{route}", json=body)
                data = response.json() if response.status_code == 200 else None
            except (httpx.HTTPError, ValueError):
                data = None
            if isinstance(data, dict):
                if isinstance(data.get("count"), int):
                    ep.tokenize_route = route
                    return int(data["count"])
                if isinstance(data.get("tokens"), list):
                    ep.tokenize_route = route
                    return len(data["tokens"])
        ep.tokenize_checked = True
        return None

    # one attempt (worker thread) ---------------------------------------------------------
    def _body(self, ep: Endpoint, request: Request) -> tuple[str, dict[str, Any], str | None]:
        """The route, JSON body, and the prompt form actually sent (None: as the pipeline chose)."""
        s = request.sampling
        body: dict[str, Any] = {
            "model": self.model,
            "stream": True,
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": s.top_k,
            "repeat_penalty": s.repeat_penalty,  # llama.cpp servers
            "repetition_penalty": s.repeat_penalty,  # vLLM
            "seed": request.seed,
            "stream_options": {"include_usage": True},
        }
        if request.constraint is not None:
            body.update(_constraint_fields(ep.constraint_mode, request.constraint))
        parts = request.parts
        want_chat = self.api == "chat" or (parts is not None and parts.format == "chat-messages")
        if self.api == "completions" or not (want_chat or ep.chat_only) or parts is None:
            body["prompt"] = request.prompt
            return "/completions", body, None
        body["messages"] = parts.messages()
        if body["messages"][-1]["role"] == "assistant":
            # vLLM continues the cue; llama-server does so for a trailing assistant message anyway
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        return "/chat/completions", body, None if parts.format == "chat-messages" else "chat-messages"

    def _attempt(
        self,
        attempt: _Attempt,
        out: queue.Queue[tuple[Any, ...]],
        cancel: threading.Event,
        stop: threading.Event,
    ) -> None:
        """Stream one request from one endpoint, posting started/chunk/done/error to ``out``."""
        ep, request = attempt.endpoint, attempt.pending.request
        key = request.key
        reading = _Reading(request.sampling.max_tokens)
        try:
            route, body, sent_format = self._body(ep, request)
            prompt_tokens = self._tokenize(ep, request.prompt) or 0
            stats = GenerationStats(prompt_tokens=prompt_tokens, endpoint=ep.label, prompt_format=sent_format)
            stats.constrained = request.constraint is not None and bool(ep.constraint_mode)
            stats.finish_reason = "cancelled"
            timeout = httpx.Timeout(self._read_timeout(), connect=self.connect_timeout_s)
            attempt.last_token = time.monotonic()
            if attempt.aborted:
                raise EndpointError(f"{ep.label}: request stopped before it was sent", "request")
            client = ep.stream_client or ep.client
            with client.stream(
                "POST", f"{ep.url}{route}", json=body, timeout=timeout, extensions={"trace": attempt.trace}
            ) as response:
                attempt.response = response
                if response.status_code != 200:
                    response.read()
                    raise self._status_error(ep, response, what=route)
                out.put(("started", key, prompt_tokens))
                for line in response.iter_lines():
                    if cancel.is_set() or stop.is_set() or _skipped(request):
                        break
                    if attempt.stalled:
                        raise self._stall_error(ep)
                    if not line.startswith("data:"):
                        continue  # blank separators, ": ping" comments, event names
                    if self._take(ep, line[5:].strip(), reading, stats, attempt, out):
                        break
            stats.elapsed_s = time.perf_counter() - stats.started
            if not (cancel.is_set() or stop.is_set() or _skipped(request)):
                self._finished(ep, reading, stats)
            out.put(("done", key, "".join(reading.parts), stats))
        except Exception as exc:
            if attempt.stalled and not (cancel.is_set() or stop.is_set()):
                # the watchdog closed the stream (no token for stall_timeout_s): keep-alives only
                out.put(("error", key, self._stall_error(ep)))
            else:
                self._report_failure(exc, attempt, out, cancel, stop, reading.chunks)

    def _take(
        self,
        ep: Endpoint,
        data: str,
        reading: _Reading,
        stats: GenerationStats,
        attempt: _Attempt,
        out: queue.Queue[tuple[Any, ...]],
    ) -> bool:
        """Read one stream event's data into ``reading``, posting its text; True: stop reading."""
        if data == "[DONE]":
            reading.saw_done = True
            return True
        try:
            obj = json.loads(data)
        except ValueError:
            raise EndpointError(f"{ep.label} sent a malformed stream event") from None
        if not isinstance(obj, dict):
            return False
        if obj.get("error"):
            raise EndpointError(f"{ep.label} reported an error mid-stream: {_error_text(obj)}")
        usage = obj.get("usage")
        if isinstance(usage, dict):
            stats.prompt_tokens = int(usage.get("prompt_tokens") or stats.prompt_tokens)
            stats.completion_tokens = int(usage.get("completion_tokens") or reading.chunks)
        for choice in obj.get("choices") or []:
            text = choice.get("text")
            if text is None:
                text = (choice.get("delta") or {}).get("content")
            if text:
                reading.chunks += 1
                reading.chars += len(text)
                attempt.last_token = time.monotonic()
                if stats.first_token_s is None:
                    stats.first_token_s = time.perf_counter() - stats.started
                reading.parts.append(text)
                key = attempt.pending.request.key
                out.put(("chunk", key, text, reading.chunks, time.perf_counter() - stats.started))
            reading.finish = choice.get("finish_reason") or reading.finish
        max_tokens = reading.max_tokens
        if reading.finish is None and (reading.chunks >= max_tokens or reading.chars >= max_tokens * 64):
            # a server that ignores max_tokens: stop reading (closing the stream stops it)
            reading.finish = "length"
            return True
        return False

    def _finished(self, ep: Endpoint, reading: _Reading, stats: GenerationStats) -> None:
        """How the completion ended, into ``stats``; a stream cut short or ended oddly raises."""
        if reading.finish is None:
            raise EndpointError(
                f"{ep.label} closed the stream before the completion finished "
                f"(after {reading.chunks} chunk(s))",
                "interrupted" if reading.saw_done else "retry",
            )
        reason = _finish_reason(reading.finish)
        if reason is None:
            raise EndpointError(f"{ep.label} ended the completion with finish_reason '{reading.finish}'")
        stats.finish_reason = reason
        stats.completion_tokens = stats.completion_tokens or reading.chunks

    def _report_failure(
        self,
        exc: Exception,
        attempt: _Attempt,
        out: queue.Queue[tuple[Any, ...]],
        cancel: threading.Event,
        stop: threading.Event,
        chunks: int,
    ) -> None:
        """Post what ended an attempt; a worker must always report, or the run would wait forever."""
        ep, key = attempt.endpoint, attempt.pending.request.key
        if cancel.is_set() or stop.is_set():
            out.put(("done", key, "", GenerationStats(finish_reason="cancelled", endpoint=ep.label)))
        elif isinstance(exc, EndpointError):
            out.put(("error", key, exc))
        elif isinstance(exc, httpx.HTTPError):
            out.put(("error", key, self._transport_error(ep, exc, chunks)))
        else:
            out.put(("error", key, EndpointError(f"{ep.label}: {type(exc).__name__}: {exc}", "request")))

    # many at once ------------------------------------------------------------------------
    def _pick(self, avoid: set[str]) -> Endpoint | None:
        """The least busy healthy endpoint; a retry waits for one it has not failed on, if any is left."""
        now = time.monotonic()
        ready = [e for e in self.endpoints if e.available(now)]
        untried = [e for e in self.endpoints if e.disabled is None and e.label not in avoid]
        if untried:
            ready = [e for e in ready if e.label not in avoid]
        if not ready:
            return None
        return min(ready, key=lambda e: (e.in_flight / e.concurrency, e.failures))

    def run_many(
        self, next_request: NextRequest, cancel: threading.Event, parallel: int = 0
    ) -> Iterator[StreamEvent]:
        """Keep up to ``parallel`` (default concurrency x endpoints) requests in flight; see the
        contract in ``run_sequential``. A request that fails is retried on another endpoint."""
        limit = min(parallel, self.slots) if parallel > 0 else self.slots
        out: queue.Queue[tuple[Any, ...]] = queue.Queue()
        stop = threading.Event()
        retry: deque[_Pending] = deque()
        active: dict[int, _Attempt] = {}
        exhausted = False
        pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="convogen-openai")
        try:
            while True:
                # hand out work while there are free slots on healthy endpoints
                while not cancel.is_set() and len(active) < limit:
                    if all(e.disabled for e in self.endpoints):
                        pending = retry.popleft() if retry else None
                        if pending is None and not exhausted:
                            request = next_request()
                            pending = _Pending(request) if request is not None else None
                            exhausted = request is None
                        if pending is None:
                            break
                        yield StreamFailed(pending.request.key, pending.last_error or self._disabled_text())
                        continue
                    ep = self._pick(retry[0].failed_on if retry else set())
                    if ep is None:
                        break
                    if retry:
                        pending = retry.popleft()
                    elif exhausted:
                        break
                    else:
                        request = next_request()
                        if request is None:
                            exhausted = True
                            break
                        pending = _Pending(request)
                    pending.attempts += 1
                    attempt = _Attempt(pending, ep)
                    active[pending.request.key] = attempt
                    ep.in_flight += 1
                    pool.submit(self._attempt, attempt, out, cancel, stop)
                if cancel.is_set():
                    yield from _cancel_all(retry, active)
                if not active and not retry and (exhausted or cancel.is_set()):
                    return
                self._watch_stalls(active.values())
                try:
                    message = out.get(timeout=0.1)
                except queue.Empty:
                    continue
                kind, key = message[0], message[1]
                attempt = active.get(key)
                if attempt is None:
                    continue
                if kind == "started":
                    yield StreamStarted(key, message[2])
                elif kind == "chunk":
                    yield StreamChunk(key, message[2], message[3], message[4])
                elif kind == "done":
                    del active[key]
                    yield _done(attempt, key, message[2], message[3])
                    exhausted = False  # the caller may have queued follow-up work (a restyle pass)
                else:
                    del active[key]
                    failure = self._on_error(attempt, message[2], retry)
                    if failure is not None:
                        yield failure
        finally:
            stop.set()
            for attempt in active.values():
                attempt.abort()
            pool.shutdown(wait=True, cancel_futures=True)

    def _watch_stalls(self, attempts: Iterable[_Attempt]) -> None:
        """Cut a stream that made no progress for stall_timeout_s (keep-alive comments do not count)."""
        now = time.monotonic()
        for attempt in attempts:
            if not attempt.stalled and now - attempt.last_token > self.stall_timeout_s:
                attempt.stalled = True
                attempt.abort()

    def _on_error(self, attempt: _Attempt, exc: EndpointError, retry: deque[_Pending]) -> StreamFailed | None:
        """Decide a failed attempt: back off the endpoint and requeue, or fail the request."""
        ep, pending = attempt.endpoint, attempt.pending
        ep.in_flight -= 1
        pending.last_error = str(exc) + (f" ({exc.hint})" if exc.hint else "")
        key = pending.request.key
        if exc.kind == "request" and self._refused_grammar(ep, pending.request, str(exc)):
            retry.appendleft(pending)
            return None
        if exc.kind == "request":
            return StreamFailed(key, pending.last_error)
        if exc.kind == "interrupted" and ep.in_flight > 0:
            # llama_cpp.server (by default) ends a stream early when another request arrives:
            # this endpoint serves one request at a time, so stop overlapping and try again
            if ep.concurrency > 1:
                self._warnings.append(f"{ep.label} cuts a stream short when another arrives: one at a time")
            ep.concurrency = 1
            pending.attempts -= 1
            retry.appendleft(pending)
            return None
        if exc.kind == "no-completions":
            ep.chat_only = True
            if pending.request.parts is None or self.api == "completions":
                ep.disabled = pending.last_error
        elif exc.kind == "endpoint":
            ep.disabled = pending.last_error
        else:
            self._mark_failed(ep)
            ep.retried += 1
            pending.failed_on.add(ep.label)
        if pending.attempts >= self.max_attempts:
            return StreamFailed(key, f"gave up after {pending.attempts} attempt(s): {pending.last_error}")
        retry.append(pending)
        return None

    def _refused_grammar(self, ep: Endpoint, request: Request, message: str) -> bool:
        """A server that rejects the grammar field runs unconstrained from now on (said once)."""
        if request.constraint is None or not ep.constraint_mode or not _GRAMMAR_REFUSAL.search(message):
            return False
        field = CONSTRAINT_FIELDS[ep.constraint_mode]
        ep.constraint_mode = ""
        self._warnings.append(f"{message}; {ep.label} runs unconstrained from now on (it refused {field})")
        return True

    def _disabled_text(self) -> str:
        return "; ".join(e.disabled or "" for e in self.endpoints)

    # one stream (the Backend protocol) ---------------------------------------------------
    def stream(self, request: Request, cancel: threading.Event | None = None) -> Generation:
        """One completion through run_many (so it fails over); raw text goes to /completions."""
        stats = GenerationStats()
        cancel = cancel or threading.Event()
        handed: list[Request] = [request]

        def next_request() -> Request | None:
            return handed.pop() if handed else None

        def chunks() -> Iterator[str]:
            sent = False
            for event in self.run_many(next_request, cancel, 1):
                if isinstance(event, StreamStarted):
                    if sent:
                        raise ModelError(
                            Problem(None, "the server connection dropped mid-answer", hint="run it again")
                        )
                    stats.prompt_tokens = event.prompt_tokens
                elif isinstance(event, StreamChunk):
                    sent = True
                    yield event.text
                elif isinstance(event, StreamFailed):
                    raise ModelError(Problem(None, event.message))
                elif isinstance(event, StreamDone):
                    for name in ("prompt_tokens", "completion_tokens", "finish_reason", "first_token_s"):
                        setattr(stats, name, getattr(event.stats, name))
                    stats.elapsed_s, stats.endpoint = event.stats.elapsed_s, event.stats.endpoint

        return Generation(chunks(), stats)

    def throughput(self, elapsed_s: float) -> dict[str, float]:
        """Finished tokens per second of wall time, per endpoint label."""
        return {e.label: e.tokens / elapsed_s if elapsed_s > 0 else 0.0 for e in self.endpoints}

    def close(self) -> None:
        for ep in self.endpoints:
            for client in (ep.client, ep.stream_client):
                with contextlib.suppress(Exception):
                    if client is not None:
                        client.close()


def _constraint_fields(mode: ConstraintMode, constraint: Constraint) -> dict[str, Any]:
    """The request fields that carry a constraint to a server of this kind ({} for none)."""
    if mode == "grammar":
        return {"grammar": constraint.gbnf}
    if mode == "structured_outputs":
        if constraint.json_schema is not None:
            return {"structured_outputs": {"json": constraint.json_schema}}
        return {"structured_outputs": {"grammar": constraint.gbnf}}
    if mode == "guided":
        if constraint.json_schema is not None:
            return {"guided_json": constraint.json_schema}
        return {"guided_grammar": constraint.gbnf}
    return {}


def _skipped(request: Request) -> bool:
    """This request alone was cancelled (the user skipped it); it ends as "cancelled"."""
    return request.cancel is not None and request.cancel.is_set()


def _finish_reason(raw: str) -> FinishReason | None:
    if raw == "length":
        return "length"
    if raw in ("abort", "error", "cancelled"):
        return None
    return "stop"


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused"
    return text.splitlines()[0][:160]


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    return _error_text(data)


def _error_text(data: Any) -> str:
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            value = data.get(key)
            if isinstance(value, dict):
                return _error_text(value)
            if isinstance(value, str):
                return value[:200]
            if isinstance(value, list) and value:
                return str(value[0])[:200]
    return str(data)[:200]


@dataclass
class _Reading:
    """One completion as its stream arrives."""

    max_tokens: int
    parts: list[str] = field(default_factory=list)
    chunks: int = 0
    chars: int = 0
    finish: str | None = None
    saw_done: bool = False


def _done(attempt: _Attempt, key: int, text: str, stats: GenerationStats) -> StreamDone:
    """A request ended on its endpoint: free the slot; a completed one counts as the endpoint's."""
    ep = attempt.endpoint
    ep.in_flight -= 1
    if stats.finish_reason != "cancelled":
        ep.failures = 0
        ep.completed += 1
        ep.tokens += stats.completion_tokens
    return StreamDone(key, text, stats)


def _cancel_all(retry: deque[_Pending], active: dict[int, _Attempt]) -> Iterator[StreamDone]:
    """The run is cancelled: requests waiting for a retry end now, those in flight are aborted."""
    while retry:
        yield StreamDone(retry.popleft().request.key, "", GenerationStats(finish_reason="cancelled"))
    for attempt in active.values():
        attempt.abort()
