"""Bounded remote calls: a server that ignores max_tokens, sends only keep-alives, or never answers.

The servers are loopback fakes (tests/fake_openai.py); the stall timeout is set short on the
command line, so these tests take seconds while the defaults (60 s, three attempts) bound a real
`--limit 1` run to about three minutes.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from convogen_tui.core.making.experiment import BackendSettings
from convogen_tui.llm.openai_compat import OpenAIBackend
from tests.fake_openai import FakeOpenAI, Reply, running

pytestmark = pytest.mark.process  # real processes or loopback servers, and their waits

LIMIT_S = 60.0


def remote(datasets: Path, url: str, *extra: str) -> tuple[str, ...]:
    return (
        "generate", "sample", "--root", str(datasets), "--backend", "openai", "--base-url", url,
        "--concurrency", "1", "--limit", "1", *extra,
    )  # fmt: skip


def wait_until(condition, timeout: float = LIMIT_S) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_server_that_ignores_max_tokens_is_cut_off_at_max_tokens(cli, sample: Path, datasets: Path) -> None:
    server = FakeOpenAI(respond=lambda seen: Reply(endless=True, honour_max_tokens=False))
    with running(server):
        code, out, err = cli(*remote(datasets, server.url, "--max-tokens", "8"))  # returns at all: cut
        assert code == 0, err
        wait_until(lambda: server.hung_up == 2)  # we closed both streams (conversation, restyle)
    assert [s.max_tokens for s in server.completions()] == [8, 8]
    [conv] = [json.loads(p.read_text()) for p in (sample / "conversations").glob("*.json")]
    assert len(conv["conv"].split()) == 8
    assert conv["provenance"]["finish_reason"] == "length" and conv["provenance"]["completion_tokens"] == 8
    [twin] = [json.loads(p.read_text()) for p in (sample / "restyled-conversations").glob("*.json")]
    assert len(twin["restyled_conv"].split()) == 8
    code, out, _ = cli("show", "sample", "--root", datasets)
    assert "truncated" in out


def test_keep_alives_only_fail_the_request_after_the_stall_timeout(cli, sample: Path, datasets: Path) -> None:
    server = FakeOpenAI(respond=lambda seen: Reply(keepalive_only=True, interval_s=0.05))
    with running(server):
        code, out, err = cli(*remote(datasets, server.url, "--stall-timeout", "0.5"))
        wait_until(lambda: server.hung_up == 3)
        defaults = OpenAIBackend([server.url])
    assert code == 1, err
    failed = [line for line in out.splitlines() if "failed" in line and "sent no token" in line]
    assert len(failed) == 1, out
    assert f"{server.url} sent no token for 0.5 s" in failed[0] and "gave up after 3 attempt(s)" in failed[0]
    assert "stall_timeout_s" in failed[0]  # what to change if the server is only slow
    assert "0 conversation(s)" in out and "1 failed" in out
    assert len(server.completions()) == 3  # tried three times, then moved on
    assert not list(sample.rglob("conversations/*.json"))
    # the defaults: three attempts of at most 60 s each bound a `--limit 1` run to about 3 minutes
    assert BackendSettings().stall_timeout_s == 60.0
    assert defaults.max_attempts * defaults.stall_timeout_s == 180.0
    defaults.close()


def test_a_server_that_never_answers_is_cut_and_reported(cli, sample: Path, datasets: Path) -> None:
    never = threading.Event()
    server = FakeOpenAI(respond=lambda seen: Reply(hold=never))
    with running(server):
        try:
            code, out, _ = cli(*remote(datasets, server.url, "--stall-timeout", "0.3", "--no-restyle"))
        finally:
            never.set()
    assert code == 1
    assert "sent no token for 0.3 s" in out and "gave up after 3 attempt(s)" in out
    assert not list(sample.rglob("conversations/*.json"))


def test_the_stall_timeout_is_read_from_the_backend_block(cli, sample: Path, datasets: Path) -> None:
    server = FakeOpenAI(respond=lambda seen: Reply(keepalive_only=True))
    with running(server):
        setup_file = sample / "expt-setup.json"
        setup = json.loads(setup_file.read_text())
        setup["backend"] = {
            "kind": "openai",
            "base_urls": [server.url],
            "concurrency": 1,
            "stall_timeout_s": 0.4,
        }
        setup_file.write_text(json.dumps(setup))
        code, out, _ = cli("generate", "sample", "--root", datasets, "--limit", "1")
        wait_until(lambda: server.hung_up == 3)
    assert code == 1 and "sent no token for 0.4 s" in out
