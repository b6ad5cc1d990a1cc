"""The judge's scores in the app at 80x24: Review's column (lowest score) and judge filters, the
Stats screen's judge panel (j)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Select, Static, TextArea

from convogen_tui.core.keeping.records import JudgmentRecord
from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.tui.app import ConvogenApp
from convogen_tui.tui.screens.stats import CoverageMap, JudgePanel, StatsScreen
from convogen_tui.tui.screens.workspace import ExperimentScreen
from tests.core.judging.test_calibration import CRITERIA, add
from tests.tui_helpers import copy_sample, fake_conversation, wait_for


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = copy_sample(tmp_path)
    store = ConversationStore(root / "inst-templates" / "sample")
    add(store, 1, "kept", {**dict.fromkeys(CRITERIA, 4), "civility": 5})
    add(store, 2, "flagged", {**dict.fromkeys(CRITERIA, 3), "persona_fit": 1})
    add(store, 3, "", {**dict.fromkeys(CRITERIA, 5), "evidence": 2})
    add(store, 4, "", None, failed=True)
    add(store, 5, "", None)
    return root


def column(table: DataTable, label: str) -> list[str]:
    index = [c.label.plain for c in table.ordered_columns].index(label)
    return sorted(str(table.get_row_at(i)[index]) for i in range(table.row_count))


async def test_review_shows_the_lowest_score_and_filters_by_it(root: Path) -> None:
    app = ConvogenApp(root, "sample", load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen))
        await pilot.press("f6")
        table = app.screen.query_one("#rev-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 5)
        assert column(table, "jdg") == ["", "1", "2", "4", "✗"]
        assert sum(c.width for c in table.ordered_columns) + 2 * len(table.ordered_columns) <= 80
        show = app.screen.query_one("#rev-show", Select)
        show.value = "judge:low"
        await wait_for(pilot, lambda: table.row_count == 2)
        assert column(table, "jdg") == ["1", "2"]
        show.value = "judge:persona_fit"
        await wait_for(pilot, lambda: table.row_count == 1)
        assert column(table, "jdg") == ["1"]
        show.value = "judge:failed"
        await wait_for(pilot, lambda: table.row_count == 1 and column(table, "jdg") == ["✗"])
        show.value = "judge:none"
        await wait_for(pilot, lambda: table.row_count == 1 and column(table, "jdg") == [""])


async def test_stats_judge_panel_shows_every_criterion_at_80x24(root: Path) -> None:
    app = ConvogenApp(root, "sample", load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen))
        await pilot.press("f8")
        await wait_for(pilot, lambda: isinstance(app.screen, StatsScreen) and app.screen.stats is not None)
        await pilot.press("j")
        panel = app.screen.query_one(JudgePanel)
        await wait_for(pilot, lambda: panel.display and panel.region.width > 0)
        text = str(panel.render())
        for name in CRITERIA:
            assert name[:15] in text
        assert "persona_fit" in text and "vs marks: 2 marked, need 6" in text and "1 judge-failed" in text
        assert panel.region.right <= 80 and panel.region.bottom <= 23
        lines = text.splitlines()
        assert panel.content_size.height >= len(lines)
        assert max(len(line) for line in lines) <= panel.content_size.width


async def test_judge_template_is_edited_beside_the_others(root: Path) -> None:
    app = ConvogenApp(root, "sample", load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen))
        await pilot.press("f3")
        await pilot.press("ctrl+t", "ctrl+t")
        editor = app.screen.query_one("#tpl-judge", TextArea)
        await wait_for(pilot, lambda: editor.display and editor.region.width > 0)
        preview = app.screen.query_one("#tpl-preview", TextArea)
        await wait_for(pilot, lambda: "- civility: SocBot stays calm" in preview.text)
        assert "1 (worst) to 5 (best)" in preview.text
        editor.focus()
        editor.move_cursor(editor.document.end)
        await pilot.press(*" {persona}")
        problems = app.screen.query_one("#tpl-problems", Static)
        await wait_for(pilot, lambda: "{persona}" in str(problems.render()))
        assert "judge.txt" in str(problems.render()) or "unknown placeholder" in str(problems.render())
        await pilot.press("ctrl+t")
        assert app.screen.query_one("#tpl-conv-gen", TextArea).display


async def test_coverage_map_shows_mean_persona_fit_per_cell(tmp_path: Path) -> None:
    root = copy_sample(tmp_path)
    expt = root / "inst-templates" / "sample"
    store = ConversationStore(expt)
    for n, (persona, fit) in enumerate([(("distrust", "sarcastic"), 1), (("attention", "earnest"), 5)]):
        fake_conversation(expt, f"fit-{n}", f"170000000000000000{n + 1}", persona, 1_800_000_000.0 + n)
        scores = {**dict.fromkeys(CRITERIA, 3), "persona_fit": fit}
        store.save_judgment(f"fit-{n}", JudgmentRecord(scores=scores, rationale="by hand"))
    app = ConvogenApp(root, "sample", load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen))
        await pilot.press("f8")
        await wait_for(pilot, lambda: isinstance(app.screen, StatsScreen) and app.screen.stats is not None)
        coverage = app.screen.query_one(CoverageMap)
        await wait_for(pilot, lambda: coverage.scores is not None)
        await pilot.press("p")
        rendered = coverage.render_map()
        assert "persona_fit 1" in rendered.plain
        cells = {str(span.style) for span in rendered.spans if rendered.plain[span.start : span.end] == "█"}
        assert {"red", "green"} <= cells  # the persona it cannot play, the one it can
        await pilot.press("p")
        assert "missing 118" in coverage.render_map().plain  # the cell states again
