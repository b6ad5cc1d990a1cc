"""Runs you watch (issue #24) in the Generate pane, mounted alone in a small host app on the
scripted backend: the ETA while a run goes, ``s`` saying what it gives up, and after a skip or cancel
the conversations left without a twin counted, with the key that restyles them (``t``)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from textual.app import App, ComposeResult
from textual.reactive import reactive
from textual.widgets import Static
from textual.worker import Worker

from convogen_tui.tui.panes.generate import GeneratePane
from convogen_tui.tui.session import Session
from convogen_tui.tui.widgets.stream_view import StreamView
from tests.scripted import Script, ScriptedBatchBackend
from tests.tui_helpers import sample_root, wait_for

__all__ = ["sample_root"]  # the fixture, imported for pytest


class GenerateHost(App[None]):
    """What the pane asks of its app: the model's status line, whether a model loads, and where a
    worker's failure goes."""

    model_status: reactive[str] = reactive("model: scripted")

    def __init__(self, root: Path, backend: ScriptedBatchBackend) -> None:
        super().__init__()
        self.session = Session.open(root / "inst-templates" / "sample")
        self.session.backend = backend
        self.model_loading = False

    def compose(self) -> ComposeResult:
        yield GeneratePane(self.session, id="generate")

    def on_mount(self) -> None:
        self.query_one("#gen-conv").focus()  # the pane's keys (s, Esc, t) work from inside it

    def report_worker_error(self, worker: Worker, widget: object) -> None:
        self.notify(str(worker.error), severity="error")


def status(app: App) -> str:
    return str(app.query_one("#gen-status", Static).render())


def notes(app: App) -> list[str]:
    return [n.message for n in app._notifications]


async def test_skipping_a_restyle_says_so_and_t_restyles_it_later(sample_root: Path) -> None:
    expt = sample_root / "inst-templates" / "sample"
    gate = threading.Event()
    backend = ScriptedBatchBackend([Script(), Script("@u one two three four", hold_after=2, gate=gate)])
    app = GenerateHost(sample_root, backend)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(GeneratePane)
        pane.action_generate()  # ctrl+g on the experiment screen
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
    app = GenerateHost(sample_root, backend)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(GeneratePane)
        pane.action_generate()
        await wait_for(pilot, lambda: "2 tokens" in status(app))
        await pilot.press("s")
        gives_up = "skipping job 1 (generate): no file, and no restyle for it; the others go on"
        await wait_for(pilot, lambda: gives_up in notes(app))
        await wait_for(pilot, lambda: not pane.running)
        assert "0 conversation(s), 0 restyled, 0 failed, 1 skipped" in status(app)
        assert "wait for a twin" not in status(app)  # nothing was written, nothing waits


async def test_a_cancelled_run_counts_the_conversations_left_without_a_twin(sample_root: Path) -> None:
    gate = threading.Event()
    backend = ScriptedBatchBackend([Script(), Script(hold_after=1, gate=gate)])
    app = GenerateHost(sample_root, backend)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(GeneratePane)
        pane.action_generate()
        await wait_for(pilot, lambda: "restyle" in status(app) and "1 tokens" in status(app))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not pane.running)
        assert "cancelled" in status(app) and "1 conversation(s), 0 restyled" in status(app)
        assert "1 conversation(s) wait for a twin: t restyles them" in status(app)


async def test_a_hidden_pane_draws_nothing_and_catches_up_when_shown(sample_root: Path) -> None:
    """Streams keep coming while another tab is shown: the pane follows them without drawing (16
    streams' redraws cost a core's slice), and shows everything they wrote once it is shown."""
    first, second = threading.Event(), threading.Event()
    backend = ScriptedBatchBackend(
        [Script(hold_after=2, gate=first), Script("@u one two three four", hold_after=3, gate=second)]
    )
    app = GenerateHost(sample_root, backend)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(GeneratePane)
        conv, restyled = pane.query_one("#gen-conv", StreamView), pane.query_one("#gen-restyled", StreamView)
        pane.action_generate()
        await wait_for(pilot, lambda: conv.text.startswith("SocBot: point"))
        pane.display = False  # what a tab switch does to it
        await wait_for(pilot, lambda: pane._hidden())
        redraws = pane.redraws
        first.set()  # the conversation ends and its restyle starts, unseen
        restyling = lambda: [s.tokens for s in pane.streams.values() if s.phase == "restyle"]  # noqa: E731
        await wait_for(pilot, lambda: restyling() == [3])
        await wait_for(pilot, lambda: not pane.events)
        assert pane.redraws == redraws and not restyled.text.startswith("@u one two")
        pane.display = True
        await wait_for(pilot, lambda: restyled.text.startswith("@u one two"))
        assert conv.text.rstrip().endswith("reply 7, unconvinced.")  # the whole conversation
        second.set()
        await wait_for(pilot, lambda: not pane.running)
