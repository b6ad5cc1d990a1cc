"""Shared pieces of the app tests: a copy of the sample experiment, the app opened on it, waits.

Fixtures are imported by the test modules (no conftest), so these tests never collide with other
suites' fixtures.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import DataTable

from convogen_tui.tui.app import ConvogenApp
from convogen_tui.tui.screens.workspace import ExperimentScreen

S = TypeVar("S", bound=Screen)
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


def notes(app: ConvogenApp) -> list[str]:
    """The notifications the app is showing."""
    return [n.message for n in app._notifications]


async def opened(pilot, app: ConvogenApp, model: bool = False) -> ExperimentScreen:  # type: ignore[no-untyped-def]
    """The experiment screen once the app shows it (with ``model``, once the model has loaded too)."""
    await wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen))
    if model:
        await wait_for(pilot, lambda: app.session is not None and app.session.backend is not None, 60)
    assert isinstance(app.screen, ExperimentScreen)
    return app.screen


@asynccontextmanager
async def sample_app(
    root: Path,
    load_model: bool = False,
    await_model: bool | None = None,
    size: tuple[int, int] = (80, 24),
    **options: object,
) -> AsyncIterator[tuple[ConvogenApp, Pilot, ExperimentScreen]]:
    """The app run on the sample experiment under ``root``, once its screen shows (and its model
    has loaded, with ``load_model`` unless ``await_model`` says not): (app, pilot, screen).
    ``options`` go to ConvogenApp."""
    app = ConvogenApp(root, "sample", load_model=load_model, **options)  # type: ignore[arg-type]
    async with app.run_test(size=size) as pilot:
        model = load_model if await_model is None else await_model
        yield app, pilot, await opened(pilot, app, model=model)


@asynccontextmanager
async def missing_model_app(root: Path) -> AsyncIterator[tuple[ConvogenApp, Pilot]]:
    """The app told to load a model file that is not there, once it says loading failed."""
    missing = str(root / "missing.gguf")
    async with sample_app(root, load_model=True, await_model=False, model=missing) as (app, pilot, _):
        await wait_for(pilot, lambda: "failed" in app.model_status)
        yield app, pilot


async def screen_opened(  # type: ignore[no-untyped-def]
    pilot, kind: type[S], *keys: str, ready: Callable[[S], bool] = lambda _screen: True
) -> S:
    """Press ``keys``, then wait for the app to show a screen of ``kind`` that is ``ready``."""
    await pilot.press(*keys)
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, kind) and ready(pilot.app.screen))
    return pilot.app.screen


async def review_table(pilot, screen: ExperimentScreen, rows: int) -> DataTable:  # type: ignore[no-untyped-def]
    """Review's table (F6) once it lists ``rows`` conversations and has the focus."""
    await pilot.press("f6")
    table = screen.query_one("#rev-table", DataTable)
    await wait_for(pilot, lambda: table.row_count == rows and pilot.app.focused is table)
    return table


async def open_persona_text(pilot, screen: ExperimentScreen, row: int, column: int) -> None:  # type: ignore[no-untyped-def]
    """Open the persona texts of the Setup grid's cell (F2, the cell, enter)."""
    await pilot.press("f2")
    grid = screen.query_one("#persona-grid", DataTable)
    grid.focus()
    grid.move_cursor(row=row, column=column)
    await pilot.press("enter")


async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
    """Let the workers running now finish and the messages they post be handled: no fixed sleep
    to outlast a busy machine (a snapshot taken while a worker still runs shows half a screen)."""
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def fake_conversations(expt: Path, count: int) -> None:
    """``count`` conversations c0, c1, ... of one persona, a second apart (c0 the oldest)."""
    for i in range(count):
        fake_conversation(expt, f"c{i}", str(i), ("distrust", "cynical"), 1_700_000_000.0 + i)


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
