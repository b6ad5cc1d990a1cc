"""Runs you watch (issue #24) in the Generate pane, on the scripted backend: the ETA while a run
goes, ``s`` saying what it gives up, and after a skip or cancel the conversations left without a
twin counted, with the key that restyles them (``t``)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from textual.widgets import Static

from convogen_tui.tui.app import ConvogenApp
from convogen_tui.tui.messages import ModelReady
from convogen_tui.tui.screens.workspace import ExperimentScreen
from tests.scripted import Script, ScriptedBackend, ScriptedBatchBackend
from tests.tui_helpers import sample_root, wait_for

__all__ = ["sample_root"]  # the fixture, imported for pytest


def status(app: ConvogenApp) -> str:
    return str(app.screen.query_one("#gen-status", Static).render())


def notes(app: ConvogenApp) -> list[str]:
    return [n.message for n in app._notifications]


async def _open(pilot, app: ConvogenApp, backend: ScriptedBackend) -> ExperimentScreen:  # type: ignore[no-untyped-def]
    await wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen))
    app.post_message(ModelReady(backend))
    await wait_for(pilot, lambda: app.session is not None and app.session.backend is backend)
    assert isinstance(app.screen, ExperimentScreen)
    return app.screen


async def test_skipping_a_restyle_says_so_and_t_restyles_it_later(sample_root: Path) -> None:
    expt = sample_root / "inst-templates" / "sample"
    gate = threading.Event()
    backend = ScriptedBatchBackend([Script(), Script("@u one two three four", hold_after=2, gate=gate)])
    app = ConvogenApp(sample_root, "sample", load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open(pilot, app, backend)
        await pilot.press("f5", "ctrl+g")
        pane = screen.generate
        await wait_for(pilot, lambda: "restyle" in status(app) and "2 tokens" in status(app))
        assert "job 1/1 · restyle" in status(app)
        assert "ETA " in status(app) and "ETA -:--:--" not in status(app)  # the run's ETA, as the CLI's
        await pilot.press("s")
        stays = "skipping job 1 (restyle): the conversation stays, without a twin; the next run restyles it"
        await wait_for(pilot, lambda: any(stays in n for n in notes(app)))
        await wait_for(pilot, lambda: not pane.running)
        assert "1 conversation(s), 0 restyled, 0 failed, 1 skipped" in status(app)
        assert "1 conversation(s) wait for a twin: t restyles them (or convogen restyle)" in status(app)
        assert not list((expt / "restyled-conversations").glob("*.json"))

        await pilot.press("t")
        twins = expt / "restyled-conversations"
        await wait_for(pilot, lambda: not pane.running and any(twins.glob("*.json")))
        (conv,) = (expt / "conversations").glob("*.json")
        assert json.loads((twins / conv.name).read_text())["restyled_conv"]
        assert "done · 0 conversation(s), 1 restyled" in status(app)
        await pilot.press("t")
        await wait_for(pilot, lambda: "every conversation has a restyled twin" in notes(app))


async def test_skipping_a_generation_says_its_restyle_goes_too(sample_root: Path) -> None:
    gate = threading.Event()
    backend = ScriptedBatchBackend([Script(hold_after=2, gate=gate)])
    app = ConvogenApp(sample_root, "sample", load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open(pilot, app, backend)
        await pilot.press("f5", "ctrl+g")
        await wait_for(pilot, lambda: "2 tokens" in status(app))
        await pilot.press("s")
        gives_up = "skipping job 1 (generate): no file, and no restyle for it; the others go on"
        await wait_for(pilot, lambda: gives_up in notes(app))
        await wait_for(pilot, lambda: not screen.generate.running)
        assert "0 conversation(s), 0 restyled, 0 failed, 1 skipped" in status(app)
        assert "wait for a twin" not in status(app)  # nothing was written, nothing waits


async def test_a_cancelled_run_counts_the_conversations_left_without_a_twin(sample_root: Path) -> None:
    gate = threading.Event()
    backend = ScriptedBatchBackend([Script(), Script(hold_after=1, gate=gate)])
    app = ConvogenApp(sample_root, "sample", load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open(pilot, app, backend)
        await pilot.press("f5", "ctrl+g")
        await wait_for(pilot, lambda: "restyle" in status(app) and "1 tokens" in status(app))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not screen.generate.running)
        assert "cancelled" in status(app) and "1 conversation(s), 0 restyled" in status(app)
        assert "1 conversation(s) wait for a twin: t restyles them" in status(app)
