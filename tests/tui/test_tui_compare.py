"""Versions in the app: Review's version column and filters, and the Compare screen (figures, pairs
old and new, keep/flag/delete on either side, the diff, a rerun with the current templates), with
its snapshot at 80x24. The conversations come from the pipeline on the scripted backend, answering
as many turns as the template asks for, so the two versions differ in known ways.

Update the snapshot after an intended change with: pytest tests/tui/test_tui_compare.py --snapshot-update
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable, Select

from convogen_tui.core.keeping.records import read_conversation
from convogen_tui.core.making.check import seeds_for
from convogen_tui.core.making.experiment import load_experiment
from convogen_tui.core.making.pipeline import Pipeline
from convogen_tui.tui.app import ConvogenApp
from convogen_tui.tui.messages import ModelReady
from convogen_tui.tui.screens.choice import DiffDialog
from convogen_tui.tui.screens.compare import CompareScreen
from convogen_tui.tui.screens.workspace import ExperimentScreen
from tests.scripted import Script, ScriptedBackend
from tests.tui_helpers import copy_sample, opened, review_table, screen_opened, settle, wait_for

WORDS = [
    "facts",
    "trust",
    "water",
    "study",
    "friend",
    "why",
    "doctors",
    "data",
    "report",
    "town",
    "sources",
    "proof",
    "sky",
    "planes",
    "rain",
    "chemicals",
    "school",
    "news",
    "cousin",
    "nurse",
    "towers",
    "signal",
    "health",
    "numbers",
    "graph",
    "weather",
    "pilots",
    "records",
]


def as_asked(prompt: str) -> Script:
    """As many turns as the template asks for, at most 4 (so "exactly 8 turns" comes out short),
    in words drawn by the prompt (no two conversations alike)."""
    rng = random.Random(prompt)
    n = min(4, int(re.search(r"exactly (\d+) turns", prompt)[1]))  # type: ignore[index]

    def words() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(6))

    return Script("\n".join(f"SocBot: {words()}, honestly.\nUser: {words()}, no way." for _ in range(n)))


def generate(expt: Path, again: bool = False) -> None:
    pipeline = Pipeline(load_experiment(expt), ScriptedBackend(default=as_asked))
    plan = pipeline.plan(seeds_for(pipeline.experiment).seeds, personas="all", limit=4, seed=5, again=again)
    list(pipeline.run(plan.jobs, restyle=False))


@pytest.fixture
def expt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = copy_sample(tmp_path)
    expt = root / "inst-templates" / "sample"
    generate(expt)
    conv_gen = expt / "conv-gen.txt"
    conv_gen.write_text(conv_gen.read_text(encoding="utf-8").replace("exactly 8 turns", "exactly 4 turns"))
    generate(expt, again=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("CONVOGEN_MODELS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    time.tzset()
    return expt


async def open_compare(pilot) -> CompareScreen:  # type: ignore[no-untyped-def]
    screen = await opened(pilot, pilot.app)
    await review_table(pilot, screen, 8)
    compare = await screen_opened(pilot, CompareScreen, "c", ready=lambda shown: shown.comparison is not None)
    await settle(pilot)
    return compare


async def test_review_shows_versions_and_compare_pairs_old_and_new(expt: Path) -> None:
    app = ConvogenApp(Path("datasets"), "sample", load_model=False)
    backend = ScriptedBackend(default=as_asked)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen))
        app.post_message(ModelReady(backend))
        await wait_for(pilot, lambda: app.session is not None and app.session.backend is backend)
        await pilot.press("f6")
        table = app.screen.query_one("#rev-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 8)
        assert sorted(str(table.get_row_at(i)[3]).strip() for i in range(8)) == ["v1"] * 4 + ["v2"] * 4
        review = app.screen.review
        review.query_one("#rev-show", Select).value = "version:stale"
        await wait_for(pilot, lambda: table.row_count == 4)
        assert {review.versions[r.version] for r in review.shown} == {"v1"}
        assert "4 stale" in str(review.query_one("#rev-status").render())
        review.query_one("#rev-show", Select).value = "all"
        await wait_for(pilot, lambda: table.row_count == 8)

        await pilot.press("c")
        await wait_for(
            pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None
        )
        screen = app.screen
        comparison = screen.comparison
        assert (comparison.a.name, comparison.b.name) == ("v1", "v2")
        assert len(comparison.pairs) == 4 and comparison.result["paired"]["only_a_flagged"] == 4
        figures = str(screen.query_one("#cmp-figures").render())
        assert "4 pairs: 4 flagged only in v1, 0 only in v2" in figures
        first = screen.index
        await pilot.press("j")
        assert screen.index == (first + 1) % 4
        pair = comparison.pairs[screen.index]
        await pilot.press("h", "o")  # keep the old side's conversation
        assert read_conversation(expt / "conversations" / f"{pair.a.id}.json").mark == "kept"
        await pilot.press("l", "x")  # delete the new side's
        await wait_for(pilot, lambda: not (expt / "conversations" / f"{pair.b.id}.json").exists())
        await wait_for(pilot, lambda: screen.comparison is not None and len(screen.comparison.pairs) == 3)

        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, DiffDialog))
        assert "+Write exactly 4 turns." in app.screen.diff and "-Write exactly 8 turns." in app.screen.diff
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))

        await pilot.press("R")  # the deleted cell is made again by the current texts, same seed
        await wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen))
        await wait_for(pilot, lambda: app.screen.active_pane() == "generate")
        await wait_for(pilot, lambda: len(list((expt / "conversations").glob("*.json"))) == 8)
        recorded = read_conversation(expt / "conversations" / f"{pair.a.id}.json").provenance
        assert recorded is not None and backend.seeds[0] == recorded.random_seed
        assert "exactly 4 turns" in backend.prompts[0]


def test_compare_snapshot(snap_compare, expt: Path) -> None:  # type: ignore[no-untyped-def]
    app = ConvogenApp(Path("datasets"), "sample", load_model=False)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await open_compare(pilot)
        await pilot.pause(0.2)
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
