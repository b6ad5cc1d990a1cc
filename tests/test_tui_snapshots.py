"""Snapshots of the main screens at 80x24, without the model: nothing in them changes run to run.

Update after an intended change with: pytest tests/test_tui_snapshots.py --snapshot-update
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual.widgets import DataTable, TextArea

from convogen_tui.tui.app import ConvogenApp
from convogen_tui.tui.screens.experiments import ExperimentsScreen
from convogen_tui.tui.screens.workspace import ExperimentScreen
from tests.tui_helpers import copy_sample, fake_conversation, wait_for


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ConvogenApp:
    copy_sample(tmp_path)
    expt = tmp_path / "datasets" / "inst-templates" / "sample"
    for i, persona in enumerate(
        [("distrust", "cynical"), ("belonging", "earnest"), ("attention", "hostile")]
    ):
        fake_conversation(
            expt,
            f"0000000{i}-conv",
            f"170000000000000000{i}",
            persona,
            1_700_000_000.0 + 60 * i,
            twin=i != 1,
            turns=8 - 3 * i,
        )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    return ConvogenApp(Path("datasets"), "sample", load_model=False)


def steady(pane: str | None):  # type: ignore[no-untyped-def]
    """Open a pane, wait for its workers, and stop cursors blinking."""

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen))
        if pane is None:
            await pilot.press("ctrl+o")
            await wait_for(pilot, lambda: isinstance(app.screen, ExperimentsScreen) and bool(app.screen.rows))
        else:
            await pilot.press(pane)
            if pane == "f6":
                await wait_for(pilot, lambda: app.screen.query_one("#rev-table", DataTable).row_count == 3)
            if pane == "f4":
                await wait_for(pilot, lambda: app.screen.query_one("#seed-table", DataTable).row_count == 20)
        focus = {
            "f2": "setup-editor",
            "f3": "tpl-conv-gen",
            "f4": "seed-table",
            "f5": "gen-conv",
            "f6": "rev-table",
        }
        if pane is not None:
            await wait_for(pilot, lambda: app.focused is not None and app.focused.id == focus[pane])
        await pilot.pause(0.4)
        for area in app.screen.query(TextArea):
            area.cursor_blink = False
        await pilot.pause(0.1)

    return run_before


@pytest.mark.parametrize(
    "pane",
    [None, "f2", "f3", "f4", "f5", "f6"],
    ids=["experiments", "setup", "templates", "seeds", "generate", "review"],
)
def test_screen_snapshot(snap_compare, app: ConvogenApp, pane: str | None) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(app, terminal_size=(80, 24), run_before=steady(pane))


def test_help_snapshot(snap_compare, app: ConvogenApp) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ExperimentScreen))
        await pilot.press("f1")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
