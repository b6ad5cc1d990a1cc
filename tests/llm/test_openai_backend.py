"""The openai backend against real servers on 127.0.0.1: llama_cpp.server with the embedded model.

Four servers start once for the module (two healthy endpoints, one that a test kills mid-run, one
that wants an API key); a tiny hand-written HTTP server stands in for a server that drops streams.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.core.making.experiment import load_experiment
from convogen_tui.core.making.pipeline import Job, JobFailed, JobFinished, Pipeline, RunFinished
from convogen_tui.core.making.prompts import ChatFormat, choose_format
from convogen_tui.core.making.seeds import Seed
from convogen_tui.llm.openai_compat import OpenAIBackend

pytestmark = pytest.mark.llama  # runs the embedded model through llama.cpp

pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")

API_KEY = "sk-test-7f3a9c"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One `python -m llama_cpp.server` subprocess serving the embedded model."""

    def __init__(self, *extra: str, interrupt: bool = False) -> None:
        from convogen_tui.llm.embedded import embedded_model_path

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        args = [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_model_path())]
        args += ["--port", str(self.port), "--n_ctx", "2048", "--n_threads", "1"]
        # by default llama_cpp.server ends a stream early when another request arrives
        args += ["--interrupt_requests", str(interrupt), *extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server on port {self.port} exited ({self.proc.returncode})")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/models", timeout=2).status_code in (200, 401):
                    return
            time.sleep(0.2)
        raise RuntimeError(f"llama_cpp.server on port {self.port} not ready after {timeout} s")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Server]]:
    started = {
        "a": Server(),
        "b": Server(),
        "victim": Server(),
        "keyed": Server("--api_key", API_KEY, interrupt=True),  # as started with no options
    }
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.kill()


@pytest.fixture(autouse=True)
def no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("CONVOGEN_API_KEY", raising=False)


def _records(expt: Path, folder: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((expt / folder).glob("*.json"))]


def _set_setup(expt: Path, **changes: object) -> None:
    setup_file = expt / "expt-setup.json"
    setup = json.loads(setup_file.read_text())
    setup.update(changes)
    setup_file.write_text(json.dumps(setup, indent=2))


# the done-when command, then two endpoints from the setup block -----------------------------
def test_generate_through_one_server_then_restyle_through_two_from_the_setup(servers, sample, datasets, cli):
    a, b = servers["a"], servers["b"]
    code, out, err = cli(
        "generate", "sample", "--root", datasets, "--backend", "openai", "--base-url", a.url,
        "--limit", "2", "--max-tokens", "32", "--no-restyle",
    )  # fmt: skip
    assert code == 0, err
    assert "wrote 2 conversation(s)" in out and "per endpoint:" in out
    convs = _records(sample, "conversations")
    assert len(convs) == 2
    prov = convs[0]["provenance"]
    assert prov["model"]["backend"] == "openai"
    assert prov["model"]["endpoint"] == a.url
    assert prov["model"]["name"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")  # the served name
    assert prov["sampling"]["max_tokens"] == 32 and prov["sampling"]["temperature"] == 0.7
    assert prov["prompt_format"] == "chat-messages"  # template unknown to us: the server applies it
    assert prov["prompt_tokens"] > 50 and 0 < prov["completion_tokens"] <= 32
    assert all(c["conv"] for c in convs)

    _set_setup(sample, backend={"kind": "openai", "base_urls": [a.url, b.url], "concurrency": 1})
    code, out, err = cli("restyle", "sample", "--root", datasets, "--max-tokens", "16")
    assert code == 0, err
    twins = _records(sample, "restyled-conversations")
    assert len(twins) == 2 and all(t["restyled_conv"] for t in twins)
    assert {t["provenance"]["model"]["endpoint"] for t in twins} <= {a.url, b.url}
    assert "tok/s" in out


# failover ----------------------------------------------------------------------------------
def test_killed_endpoint_mid_run_loses_and_duplicates_nothing(servers, sample):
    """Kill one of two servers while it streams: its requests finish on the other, once each."""
    a, victim = servers["a"], servers["victim"]
    _set_setup(sample, prompt_format="llama2")  # raw text through /completions, as locally
    experiment = load_experiment(sample)
    backend = OpenAIBackend([a.url, victim.url], concurrency=2, backoff_s=0.2)
    sampling = experiment.sampling.model_copy(update={"max_tokens": 12})
    pipeline = Pipeline(experiment, backend, sampling=sampling)
    grid = experiment.personas()
    jobs = [
        Job(Seed(f"t{i}", f"Seed tweet {i}: they lie to us about everything"), grid[i], i) for i in range(5)
    ]
    killed = False
    events = []
    for event in pipeline.run(jobs, restyle=True, parallel=backend.slots):
        events.append(event)
        if (
            not killed
            and isinstance(event, JobFinished)
            and event.stats.endpoint == victim.url
            and backend.endpoints[1].in_flight > 0
        ):
            victim.kill()  # it has another request in flight right now
            killed = True
    assert killed, "the victim never finished a pass while busy"
    result = events[-1]
    assert isinstance(result, RunFinished)
    assert not [e for e in events if isinstance(e, JobFailed)]
    assert (result.conversations, result.restyled, result.failed) == (5, 5, 0)
    assert backend.endpoints[1].retried >= 1  # something really failed over
    convs = _records(sample, "conversations")
    assert sorted(c["tweet_id"] for c in convs) == [f"t{i}" for i in range(5)]
    store = ConversationStore(sample)
    assert store.without_twin() == []
    assert len(_records(sample, "restyled-conversations")) == 5
    assert {c["provenance"]["prompt_format"] for c in convs} == {"llama2"}
    generated = [e for e in events if isinstance(e, JobFinished) and e.phase == "generate"]
    assert len(generated) == 5


# clear messages ----------------------------------------------------------------------------
def test_wrong_url_is_one_clear_line(servers, datasets, cli):
    code, _out, err = cli(
        "generate", "sample", "--root", datasets, "--base-url", f"http://127.0.0.1:{_free_port()}/v1",
        "--limit", "1",
    )  # fmt: skip
    assert code == 1
    assert err.strip().count("\n") == 0
    assert "cannot reach http://127.0.0.1:" in err and "connection refused" in err and "--base-url" in err

    code, _out, err = cli(
        "generate", "sample", "--root", datasets, "--base-url", servers["a"].url.replace("/v1", "/api"),
        "--limit", "1",
    )  # fmt: skip
    assert code == 1
    assert "has no /models route (HTTP 404)" in err and "ends in /v1" in err


def test_a_server_that_cuts_overlapping_streams_is_used_one_at_a_time(servers, sample, monkeypatch):
    monkeypatch.setenv("CONVOGEN_API_KEY", API_KEY)
    experiment = load_experiment(sample)
    backend = OpenAIBackend([servers["keyed"].url], concurrency=2)
    pipeline = Pipeline(
        experiment, backend, sampling=experiment.sampling.model_copy(update={"max_tokens": 8})
    )
    grid = experiment.personas()
    jobs = [Job(Seed(f"o{i}", f"overlap {i}"), grid[i], i) for i in range(2)]
    result = list(pipeline.run(jobs, restyle=False, parallel=backend.slots))[-1]
    assert isinstance(result, RunFinished)
    assert (result.conversations, result.failed) == (2, 0)
    assert backend.endpoints[0].concurrency == 1
    assert any("one at a time" in w for w in backend.warnings)


def test_wrong_api_key_is_a_clear_401_and_the_key_never_shows(servers, datasets, sample, cli, monkeypatch):
    keyed = servers["keyed"].url
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-123")
    code, out, err = cli("generate", "sample", "--root", datasets, "--base-url", keyed, "--limit", "1")
    assert code == 1
    assert f"{keyed} refused the request (HTTP 401" in err and "OPENAI_API_KEY" in err
    assert "sk-wrong-key-123" not in out + err

    monkeypatch.setenv("CONVOGEN_API_KEY", API_KEY)
    code, out, err = cli(
        "generate", "sample", "--root", datasets, "--base-url", keyed, "--limit", "1", "--max-tokens", "4",
        "--no-restyle",
    )  # fmt: skip
    assert code == 0, err
    assert API_KEY not in out + err
    assert API_KEY not in "".join(p.read_text() for p in (sample / "conversations").glob("*.json"))


class _DroppingHandler(BaseHTTPRequestHandler):
    """Lists a model, then answers every completion with two SSE chunks and hangs up."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            body = json.dumps({"object": "list", "data": [{"id": "tiny", "object": "model"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not self.path.endswith("completions"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for word in ("SocBot:", " hello"):
            chunk = {
                "choices": [{"index": 0, "text": word, "delta": {"content": word}, "finish_reason": None}]
            }
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def dropping_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DroppingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_stream_closed_early_fails_the_job_clearly_and_writes_nothing(dropping_server, sample, datasets, cli):
    code, out, _err = cli(
        "generate", "sample", "--root", datasets, "--base-url", dropping_server, "--limit", "1",
    )  # fmt: skip
    assert code == 1
    assert f"{dropping_server} closed the stream before the completion finished (after 2 chunk(s))" in out
    assert "gave up after 3 attempt(s)" in out
    assert "0 conversation(s)" in out and "1 failed" in out
    assert not list((sample / "conversations").glob("*.json"))


# prompt format for a served model ----------------------------------------------------------
def test_served_model_prompt_format():
    llama2 = ChatFormat("llama-2-13b-chat", server_chat=True)
    other = ChatFormat("qwen2.5-7b-instruct", server_chat=True)
    known = ChatFormat("qwen", chat_template="{{ messages }}", server_chat=True)
    assert choose_format(llama2) == "llama2"
    assert choose_format(other) == "chat-messages"
    assert choose_format(other, "llama2") == "llama2"
    assert choose_format(known) == "chat-template"  # llama-server's /props gave the template
    assert choose_format(ChatFormat("qwen")) == "llama2"  # local backend unchanged


def test_api_key_is_read_from_the_environment_only(monkeypatch):
    from convogen_tui.llm.openai_compat import api_key_from_env, display_url

    monkeypatch.setenv("OPENAI_API_KEY", "k1")
    assert api_key_from_env() == "k1"
    monkeypatch.setenv("CONVOGEN_API_KEY", "k2")
    assert api_key_from_env() == "k2"
    assert display_url("https://user:secret@host:8000/v1/?token=x") == "https://host:8000/v1"
    assert os.environ["CONVOGEN_API_KEY"] == "k2"


def test_cancel_mid_stream_ends_every_request_once_and_writes_nothing(servers, sample):
    experiment = load_experiment(sample)
    backend = OpenAIBackend([servers["a"].url, servers["b"].url], concurrency=1)
    sampling = experiment.sampling.model_copy(update={"max_tokens": 64})
    pipeline = Pipeline(experiment, backend, sampling=sampling)
    grid = experiment.personas()
    jobs = [Job(Seed(f"c{i}", f"cancel me {i}"), grid[i], i) for i in range(4)]
    cancel = threading.Event()
    events = []
    for event in pipeline.run(jobs, cancel=cancel, parallel=backend.slots):
        events.append(event)
        if type(event).__name__ == "TokenChunk":
            cancel.set()
    result = events[-1]
    assert isinstance(result, RunFinished) and result.cancelled
    assert (result.conversations, result.failed) == (0, 0)
    assert not list((sample / "conversations").glob("*.json"))
    assert all(e.in_flight == 0 for e in backend.endpoints)
