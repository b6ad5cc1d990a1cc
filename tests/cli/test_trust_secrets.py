"""Secrets never shown: a server that echoes the key, in an error body or in the text it streams.

Every message, notification, log line and saved file passes through core.redact; these tests put
the key where a careless proxy would and look for it everywhere the user could see it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote

import pytest

from convogen_tui.core.keeping.redact import RedactingFilter, redact, register_secret
from tests.fake_openai import FakeOpenAI, Reply, running

pytestmark = pytest.mark.process  # real processes or loopback servers, and their waits

KEY = "sk-live-4f9c1b2e7a8d/secret+key="


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVOGEN_API_KEY", KEY)


def everything_saved(root: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


def remote(datasets: Path, url: str, *extra: str) -> tuple[str, ...]:
    return (
        "generate", "sample", "--root", str(datasets), "--backend", "openai", "--base-url", url,
        "--concurrency", "1", "--limit", "1", *extra,
    )  # fmt: skip


def test_a_401_body_echoing_the_authorization_header_does_not_show_the_key(cli, datasets: Path) -> None:
    server = FakeOpenAI(
        respond=lambda s: Reply(status=401, error_body="bad key. You sent: Authorization: {auth}")
    )
    with running(server):
        code, out, err = cli(*remote(datasets, server.url))
    assert server.completions()[0].headers["Authorization"] == f"Bearer {KEY}"  # it was sent...
    assert code == 1
    assert "refused the request (HTTP 401" in out + err
    assert KEY not in out + err and quote(KEY, safe="") not in out + err  # ... and never shown
    assert "[CONVOGEN_API_KEY redacted]" in out + err
    assert KEY not in everything_saved(datasets)


def test_a_500_echoing_the_key_url_encoded_mid_run_is_redacted(cli, datasets: Path) -> None:
    body = f"upstream failed for https://proxy/v1?key={quote(KEY, safe='')} with {{auth}}"
    server = FakeOpenAI(respond=lambda s: Reply(status=500, error_body=body))
    with running(server):
        code, out, err = cli(*remote(datasets, server.url))
    assert code == 1 and "gave up after 3 attempt(s)" in out
    assert KEY not in out + err and quote(KEY, safe="") not in out + err


def test_a_key_echoed_in_the_streamed_text_is_not_saved(cli, sample: Path, datasets: Path) -> None:
    server = FakeOpenAI(respond=lambda s: Reply(echo_in_text=True))
    with running(server):
        code, out, err = cli(*remote(datasets, server.url))
    assert code == 0, err
    saved = everything_saved(sample)
    assert "SocBot: point 0" in saved and KEY not in saved and "[CONVOGEN_API_KEY redacted]" in saved
    code, out, _ = cli("show", "sample", "--root", datasets)
    assert KEY not in out


def test_every_configured_secret_is_redacted_wherever_it_appears(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_BEARER_TOKEN", "AAAA%2Fx-bearer-token")
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnop")
    monkeypatch.setenv("OPENAI_API_KEY", "abc")  # too short to be a secret: left alone
    text = f"key={KEY} x=AAAA%2Fx-bearer-token hf=hf_abcdefghijklmnop Authorization: Bearer other-token-1234"
    cleaned = redact(text)
    for secret in (KEY, "AAAA%2Fx-bearer-token", "hf_abcdefghijklmnop", "other-token-1234"):
        assert secret not in cleaned
    assert "[X_BEARER_TOKEN redacted]" in cleaned and "[HF_TOKEN redacted]" in cleaned
    assert "Bearer [redacted]" in cleaned
    assert redact("abc stays") == "abc stays"
    register_secret("given-in-code-9876", "CONVOGEN_API_KEY")
    assert "given-in-code-9876" not in redact("it was given-in-code-9876")


def test_log_records_pass_through_the_same_step(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("convogen.test.redaction")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="convogen.test.redaction"):
        logger.info("request headers: %s", {"Authorization": f"Bearer {KEY}"})
    assert KEY not in caplog.text and "redacted" in caplog.text


async def test_app_notifications_are_redacted(tmp_path: Path) -> None:
    from convogen_tui.tui.app import ConvogenApp
    from tests.tui_helpers import copy_sample, wait_for

    app = ConvogenApp(copy_sample(tmp_path), load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.notify(f"server said: Authorization: Bearer {KEY}", title=f"error {KEY}")
        await wait_for(pilot, lambda: bool(app._notifications))
        shown = [(n.title, n.message) for n in app._notifications]
    assert all(KEY not in title + message for title, message in shown)
    assert any("redacted" in message for _, message in shown)
