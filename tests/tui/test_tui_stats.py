"""The Stats screen (F8 and the command palette): numbers and plots of the open experiment, updated
as conversations arrive; Review's quality filter. Snapshot at 80x24.

Update the snapshot after an intended change with: pytest tests/tui/test_tui_stats.py --snapshot-update
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from textual.command import CommandList
from textual.widgets import DataTable, Select, Static

from convogen_tui.tui.app import ConvogenApp
from convogen_tui.tui.keys import KeyFooter
from convogen_tui.tui.screens.experiments import ExperimentsScreen
from convogen_tui.tui.screens.stats import CoverageMap, StatsScreen
from convogen_tui.tui.screens.workspace import ExperimentScreen
from convogen_tui.tui.widgets.bars import BarChart
from tests.core.judging.test_quality import DATA, install
from tests.tui_helpers import (
    copy_sample,
    fake_conversation,
    opened,
    review_table,
    sample_app,
    screen_opened,
    settle,
    wait_for,
)

CASES = ["clean-plain-fluoride", "clean-numbered-garlic", "user-first", "restyled-700-characters"]


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = copy_sample(tmp_path)
    install(root / "inst-templates" / "sample", [DATA / "cases" / f"{name}.json" for name in CASES])
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    return root


async def stats_shown(pilot) -> StatsScreen:  # type: ignore[no-untyped-def]
    """From the experiment's screen, Stats (F8) once its numbers are in."""
    await opened(pilot, pilot.app)
    return await screen_opened(pilot, StatsScreen, "f8", ready=lambda stats: stats.stats is not None)


def summary(app: ConvogenApp) -> str:
    return str(app.screen.query_one("#stats-summary", Static).render())


async def test_stats_screen_shows_the_numbers_and_follows_new_files(root: Path) -> None:
    async with sample_app(root) as (app, pilot, _screen):
        await stats_shown(pilot)
        text = summary(app)
        assert text.startswith("4 convs · 3 restyled · 2 flagged · 1 near-dup")
        assert "cells 2/120 done, 117 missing" in text and "MTLD" in text
        stats = app.screen.stats
        assert stats is not None and stats["flags"]["user-first"]["count"] == 1
        coverage = app.screen.query_one(CoverageMap)
        assert "done 2" in str(coverage.render()) and "missing 117" in str(coverage.render())

        # a conversation written meanwhile (by a run, or another terminal) shows up by itself
        expt = root / "inst-templates" / "sample"
        fake_conversation(expt, "new-one", "1700000000000000020", ("attention", "earnest"), 1_800_000_000.0)
        await wait_for(pilot, lambda: summary(app).startswith("5 convs"))
        assert "cells 3/120 done" in summary(app)

        await pilot.press("escape")
        assert isinstance(app.screen, ExperimentScreen)


async def test_stats_footer_starts_with_help_and_axes_cover_the_bars(root: Path) -> None:
    async with sample_app(root) as (app, pilot, _screen):
        await stats_shown(pilot)
        footer = app.screen.query_one(KeyFooter)
        await wait_for(pilot, lambda: bool(footer.entries))
        keys = [(entry.shown, entry.description) for entry in footer.entries]
        assert keys[0] == ("?", "Help") and ("Esc", "Back") in keys
        # 2 of 4 conversations flagged by one rule each: 25 % bars, on an axis whose ticks are whole
        flags = str(app.screen.query_one("#stats-flags", BarChart).render())
        axis_labels = flags.splitlines()[-1].split()
        assert axis_labels[0] == "0" and axis_labels[-1].endswith("%")
        assert float(axis_labels[-1].rstrip("%")) >= 25 and all("." not in label for label in axis_labels)
        turns = str(app.screen.query_one("#stats-turns", BarChart).render())
        ticks = [line.split("┤")[0].strip() for line in turns.splitlines() if "┤" in line]
        assert ticks and all(tick.isdigit() for tick in ticks)  # counts: whole ticks only


def palette_offers(app: ConvogenApp, prompt: str) -> bool:
    lists = app.screen.query(CommandList)
    if not lists:
        return False
    options = lists.first()
    return options.option_count > 0 and prompt in str(options.get_option_at_index(0).prompt)


async def test_stats_from_the_command_palette(root: Path) -> None:
    async with sample_app(root) as (app, pilot, _screen):
        await pilot.press("ctrl+p")
        await pilot.press(*"Stats: quality")
        await wait_for(pilot, lambda: palette_offers(app, "Stats: quality, diversity, coverage"))
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, StatsScreen))


async def test_review_filters_by_a_quality_rule(root: Path) -> None:
    async with sample_app(root) as (app, pilot, screen):
        table = await review_table(pilot, screen, 4)
        app.screen.query_one("#rev-show", Select).value = "flag:user-first"
        await wait_for(pilot, lambda: table.row_count == 1)
        assert "uf" in str(table.get_row_at(0)[-1]).split()  # user-first, by its code at 80 columns
        app.screen.query_one("#rev-show", Select).value = "flags:none"
        await wait_for(pilot, lambda: table.row_count == 2)
        assert [table.get_row_at(i)[-1] for i in range(2)] == ["", ""]  # the two clean ones


def test_stats_snapshot(snap_compare, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(root.parent)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await stats_shown(pilot)
        await settle(pilot)

    app = ConvogenApp(Path("datasets"), "sample", load_model=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_cases_used_here_have_the_flags_the_summary_counts() -> None:
    flagged = [name for name in CASES if json.loads((DATA / "cases" / f"{name}.json").read_text())["expect"]]
    assert flagged == ["user-first", "restyled-700-characters"]


async def quiet(pilot, state) -> None:  # type: ignore[no-untyped-def]
    """Until what started at opening has finished: the same state twice after the workers ran."""
    before = None
    while state() != before or state()[1]:
        before = state()
        await settle(pilot)


async def test_idle_stats_and_review_compute_nothing_until_a_file_changes(root: Path) -> None:
    """Polls with nothing changed start no computation and no listing (an idle app costs no CPU);
    a burst of new files costs one more of each, not one per file or per poll."""
    app = ConvogenApp(root, "sample", load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen))
        workspace = app.screen
        assert isinstance(workspace, ExperimentScreen)
        await pilot.press("f6")
        table = workspace.query_one("#rev-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        await settle(pilot)
        workspace.poll_disk()  # what opening did (the check's write probe in the folders) is seen once
        await quiet(pilot, lambda: (workspace.review.listings, workspace.review._listing))
        listings = workspace.review.listings
        for _ in range(5):
            workspace.poll_disk()
            await settle(pilot)
        assert workspace.review.listings == listings
        await pilot.press("f8")
        screen = app.screen
        await wait_for(pilot, lambda: isinstance(screen, StatsScreen) and screen.stats is not None)
        assert isinstance(screen, StatsScreen)
        screen._poll()
        await quiet(pilot, lambda: (screen.computations, screen._busy))
        computations = screen.computations
        for _ in range(5):
            screen._poll()
            await settle(pilot)
        assert screen.computations == computations
        expt = root / "inst-templates" / "sample"
        for i in range(3):  # a burst: three files between two polls
            fake_conversation(
                expt, f"burst-{i}", f"170000000000000003{i}", ("attention", "earnest"), 1.8e9 + i
            )
        screen._poll()
        screen._poll()
        await wait_for(pilot, lambda: summary(app).startswith("7 convs"))
        await settle(pilot)
        assert screen.computations == computations + 1
        # the experiments screen under the open experiment counts nothing while it is hidden
        # (Textual calls it is_current: it might show through), however its folders change
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is workspace)
        experiments = next(s for s in app.screen_stack if isinstance(s, ExperimentsScreen))
        countings = experiments.countings
        for _ in range(3):
            experiments._poll()
            await settle(pilot)
        assert experiments.countings == countings
