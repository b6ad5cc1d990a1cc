"""A misbehaving OpenAI-compatible server on 127.0.0.1, for the faults no real server shows on cue.

The test decides each answer with ``server.respond = lambda req: Reply(...)``: stream words (with
or without honouring max_tokens), hold the stream until an Event is set (so a test knows a run is
mid-job before it kills or interrupts it), send only keep-alive comments, or answer an HTTP error
whose body echoes the request's Authorization header, as some proxies do.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from convogen_tui.core.making.prompts import RESTYLE_CUE
from tests.scripted import EIGHT_TURNS


@dataclass
class Seen:
    """One completion request as the server saw it."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def restyle(self) -> bool:
        return RESTYLE_CUE in json.dumps(self.body)

    @property
    def max_tokens(self) -> int:
        return int(self.body.get("max_tokens") or 0)


@dataclass
class Reply:
    """How to answer one completion request."""

    text: str = EIGHT_TURNS
    honour_max_tokens: bool = True
    endless: bool = False  # stream words until the client hangs up, ignoring max_tokens
    keepalive_only: bool = False  # send ": keep-alive" comments and never a token
    hold: threading.Event | None = None  # wait for this before the first byte of the stream
    status: int = 200
    error_body: str | None = None  # sent with a non-200 status; "{auth}" is the request's header
    echo_in_text: bool = False  # put the Authorization header in the completion text itself
    interval_s: float = 0.02  # between keep-alives


@dataclass
class FakeOpenAI:
    """The server; ``url`` is its base URL (ends in /v1)."""

    respond: Callable[[Seen], Reply] = field(default=lambda seen: Reply())
    requests: list[Seen] = field(default_factory=list)
    holding: threading.Event = field(default_factory=threading.Event)  # a stream waits on a hold
    hung_up: int = 0  # streams the client closed before they ended
    sent_tokens: int = 0
    url: str = ""
    owned_by: str | None = None  # what /v1/models says ("vllm" for a vLLM server)
    version: str | None = None  # what /version says (vLLM), None: no such route
    lock: threading.Lock = field(default_factory=threading.Lock)

    def completions(self) -> list[Seen]:
        with self.lock:
            return list(self.requests)


def _handler(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _json(self, status: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                model = {"id": "fake", "object": "model"}
                if server.owned_by is not None:
                    model["owned_by"] = server.owned_by
                self._json(200, {"object": "list", "data": [model]})
            elif self.path.rstrip("/") == "/version" and server.version is not None:
                self._json(200, {"version": server.version})
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            if not self.path.endswith("completions"):
                self._json(404, {"error": "not found"})
                return
            seen = Seen(self.path, body, dict(self.headers))
            with server.lock:
                server.requests.append(seen)
            reply = server.respond(seen)
            auth = self.headers.get("Authorization", "")
            if reply.status != 200:
                text = (reply.error_body or "error").replace("{auth}", auth)
                raw = text.encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
                return
            if reply.hold is not None:
                server.holding.set()
                while not reply.hold.wait(0.05):
                    pass
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                self._stream(seen, reply, auth)
            except (BrokenPipeError, ConnectionResetError):
                with server.lock:
                    server.hung_up += 1

        def _event(self, payload: dict[str, Any] | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            self.wfile.write(f"data: {data}\n\n".encode())
            self.wfile.flush()

        def _chunk(self, text: str, finish: str | None = None) -> None:
            choice = {"index": 0, "text": text, "delta": {"content": text}, "finish_reason": finish}
            self._event({"choices": [choice]})

        def _stream(self, seen: Seen, reply: Reply, auth: str) -> None:
            if reply.keepalive_only:
                while True:
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
                    time.sleep(reply.interval_s)
            words = _words(reply.text + (f" {auth}" if reply.echo_in_text else ""), reply.endless)
            limit = seen.max_tokens if reply.honour_max_tokens and seen.max_tokens else None
            for sent, word in enumerate(words):
                if limit is not None and sent >= limit:
                    self._chunk("", "length")
                    break
                self._chunk(word)
                with server.lock:
                    server.sent_tokens += 1
            else:
                self._chunk("", "stop")
            self._event("[DONE]")

    return Handler


def _words(text: str, endless: bool) -> Iterator[str]:
    pieces = re.findall(r"\S+\s*", text)
    while True:
        yield from pieces
        if not endless:
            return


class running:
    """``with running(FakeOpenAI()) as server:`` serves it on a free port, in a thread."""

    def __init__(self, server: FakeOpenAI) -> None:
        self.server = server
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
        self.http.daemon_threads = True
        server.url = f"http://127.0.0.1:{self.http.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self.server

    def __exit__(self, *exc: object) -> None:
        self.http.shutdown()
        self.http.server_close()
