"""A loopback stand-in for the X API v2 ``GET /2/tweets``: the only fake in the seeds tests.

It answers like the real API: a ``data`` array for found tweets, an ``errors`` array for the rest
(with the real shapes of not-found, not-authorized and suspended errors; no ``data`` key when
nothing was found), 401 for a wrong bearer token, 429 with ``x-rate-limit-*`` headers, and it can
be told to fail with 500s.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

PROBLEMS = "https://api.twitter.com/2/problems/"


def problem(
    tweet_id: str, detail: str, title: str, kind: str, resource_type: str = "tweet"
) -> dict[str, str]:
    """One entry of the API's ``errors`` list, as X API v2 writes it for an id it cannot return."""
    return {
        "value": tweet_id,
        "detail": detail,
        "title": title,
        "resource_type": resource_type,
        "parameter": "ids",
        "resource_id": tweet_id,
        "type": PROBLEMS + kind,
    }


def not_found(tweet_id: str) -> dict[str, str]:
    detail = f"Could not find tweet with ids: [{tweet_id}]."
    return problem(tweet_id, detail, "Not Found Error", "resource-not-found")


def protected(tweet_id: str) -> dict[str, str]:
    detail = f"Sorry, you are not authorized to see the Tweet with ids: [{tweet_id}]."
    return problem(tweet_id, detail, "Authorization Error", "not-authorized-for-resource")


def suspended(tweet_id: str) -> dict[str, str]:
    detail = "User has been suspended: [gone_account]."
    return problem(tweet_id, detail, "Forbidden", "resource-not-found", resource_type="user")


class FakeXApi:
    """State shared with the handler: tweets to serve, a script of failures, requests seen."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.tweets: dict[str, str] = {}
        self.errors: dict[str, dict[str, str]] = {}
        self.script: list[str] = []  # per request, in order: "429", "500", "401", "403", "ok"
        self.fail_after: int | None = None  # answer 500 once this many requests succeeded
        self.requests: list[list[str]] = []  # ids of each request that got tweets back
        self.hits = 0
        self.auth_headers: list[str] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> FakeXApi:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path: str, auth: str) -> tuple[int, dict[str, str], dict[str, object]]:
        with self.lock:
            self.hits += 1
            self.auth_headers.append(auth)
            step = self.script.pop(0) if self.script else "ok"
            url = urlparse(path)
            if url.path != "/2/tweets":
                return 404, {}, {"title": "Not Found Error", "detail": "no such route"}
            if step == "401" or auth != f"Bearer {self.token}":
                body = {
                    "title": "Unauthorized",
                    "type": "about:blank",
                    "status": 401,
                    "detail": "Unauthorized",
                }
                return 401, {}, body
            if step == "403":
                body = {
                    "title": "Client Forbidden",
                    "detail": "When authenticating requests to the Twitter API v2 endpoints, you "
                    "must use keys and tokens from a Twitter developer App that is attached to a "
                    "Project.",
                    "reason": "client-not-enrolled",
                    "type": PROBLEMS + "client-forbidden",
                }
                return 403, {}, body
            if step == "429":
                headers = {
                    "x-rate-limit-limit": "15",
                    "x-rate-limit-remaining": "0",
                    "x-rate-limit-reset": str(int(time.time()) + 1),
                }
                body = {
                    "title": "Too Many Requests",
                    "detail": "Too Many Requests",
                    "type": "about:blank",
                    "status": 429,
                }
                return 429, headers, body
            if step == "500" or (self.fail_after is not None and len(self.requests) >= self.fail_after):
                return (
                    500,
                    {},
                    {
                        "title": "Internal Server Error",
                        "status": 500,
                        "detail": "Internal Server Error",
                        "type": "about:blank",
                    },
                )
            ids = parse_qs(url.query).get("ids", [""])[0].split(",")
            if len(ids) > 100:
                body = {
                    "title": "Invalid Request",
                    "detail": "One or more parameters to your request was invalid.",
                    "type": PROBLEMS + "invalid-request",
                    "errors": [{"message": "too many ids"}],
                }
                return 400, {}, body
            self.requests.append(ids)
            data = [
                {"id": i, "text": self.tweets[i], "edit_history_tweet_ids": [i]}
                for i in ids
                if i in self.tweets
            ]
            errors = [self.errors.get(i) or not_found(i) for i in ids if i not in self.tweets]
            body: dict[str, object] = {}
            if data:
                body["data"] = data
            if errors:
                body["errors"] = errors
            headers = {
                "x-rate-limit-limit": "15",
                "x-rate-limit-remaining": "14",
                "x-rate-limit-reset": str(int(time.time()) + 900),
            }
            return 200, headers, body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, headers, body = api.answer(self.path, self.headers.get("Authorization", ""))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json; charset=utf-8")
                self.send_header("content-length", str(len(payload)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


def serve_fake_x_api(monkeypatch: Any, token: str) -> Iterator[FakeXApi]:
    """Start the fake API and point the code at it, as a fixture body (``yield from``)."""
    server = FakeXApi(token).start()
    monkeypatch.setenv("CONVOGEN_X_API_URL", server.url)
    monkeypatch.setenv("X_BEARER_TOKEN", token)
    monkeypatch.delenv("TWITTER_BEARER_TOKEN", raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    try:
        yield server
    finally:
        server.stop()
