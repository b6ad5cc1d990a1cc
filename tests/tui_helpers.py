"""Shared pieces of the app tests: a copy of the sample experiment and a wait helper.

Fixtures are imported by the test modules (no conftest), so these tests never collide with other
suites' fixtures.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "inst-templates" / "sample"


def copy_sample(tmp_path: Path, max_tokens: int | None = None) -> Path:
    """tmp/datasets with the sample experiment and its seeds; returns the datasets root."""
    root = tmp_path / "datasets"
    shutil.copytree(SAMPLE, root / "inst-templates" / "sample")
    shutil.copy2(REPO / "datasets" / "sample-seeds.tsv", root / "sample-seeds.tsv")
    if max_tokens is not None:
        setup_path = root / "inst-templates" / "sample" / "expt-setup.json"
        setup = json.loads(setup_path.read_text())
        setup["sampling"]["max_tokens"] = max_tokens
        setup_path.write_text(json.dumps(setup, indent=2) + "\n")
    return root


@pytest.fixture
def sample_root(tmp_path: Path) -> Path:
    return copy_sample(tmp_path)


async def wait_for(pilot, condition: Callable[[], bool], timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Let the app run until ``condition`` holds (workers post messages meanwhile)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.05)
        await asyncio.sleep(0)


async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
    """Let the workers running now finish and the messages they post be handled: no fixed sleep
    to outlast a busy machine (a snapshot taken while a worker still runs shows half a screen)."""
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def fake_conversation(
    expt: Path,
    conv_id: str,
    tweet_id: str,
    persona: tuple[str, str],
    created: float,
    twin: bool = True,
    turns: int = 8,
    tweet: str | None = None,
) -> None:
    """Write a conversation (and twin) in the stored format, with a fixed time for snapshots."""
    conv = "\n".join(f"SocBot: point {i}\nUser: reply {i}" for i in range(turns))
    record = {
        "tweet_id": tweet_id,
        "disposition": f"{persona[1]} text",
        "motivation": f"{persona[0]} text",
        "tweet": tweet if tweet is not None else f"seed tweet {tweet_id}",
        "conv": conv,
        "persona": {"motivation": persona[0], "disposition": persona[1]},
        "provenance": {"created_at": created, "finish_reason": "stop", "model": {"name": "test"}},
    }
    (expt / "conversations").mkdir(exist_ok=True)
    (expt / "conversations" / f"{conv_id}.json").write_text(json.dumps(record))
    if twin:
        (expt / "restyled-conversations").mkdir(exist_ok=True)
        restyled = {"tweet_id": tweet_id, "restyled_conv": conv.replace("point", "pt")}
        (expt / "restyled-conversations" / f"{conv_id}.json").write_text(json.dumps(restyled))
