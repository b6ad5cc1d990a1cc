"""The app's ways of starting work go through the one planner: Generate (ctrl+g), a seed's Enter,
ctrl+r and Review's regenerate each write the cells, with the random seeds, that ``planner.plan``
gives for the same request (the app runs with ``--seed 5`` on the scripted backend)."""

from __future__ import annotations

import json
from pathlib import Path

from textual.widgets import DataTable

from convogen_tui.core.making.experiment import load_experiment
from convogen_tui.core.making.planner import Cell, PlanRequest, job_random_seed, plan
from convogen_tui.core.making.seeds import Seed
from convogen_tui.tui.app import ConvogenApp
from convogen_tui.tui.messages import ModelReady
from convogen_tui.tui.screens.workspace import ExperimentScreen
from tests.core.making.test_planner import cells_of, written
from tests.scripted import Script, ScriptedBackend
from tests.tui_helpers import fake_conversation, sample_root, wait_for

__all__ = ["sample_root"]  # the fixture, imported for pytest
SEED = 5


async def _open(pilot, app: ConvogenApp) -> ExperimentScreen:  # type: ignore[no-untyped-def]
    await wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen))
    app.post_message(ModelReady(ScriptedBackend()))
    await wait_for(pilot, lambda: app.session is not None and app.session.backend is not None)
    assert isinstance(app.screen, ExperimentScreen)
    return app.screen


async def _wait_written(pilot, screen: ExperimentScreen, expt: Path, count: int) -> None:  # type: ignore[no-untyped-def]
    await wait_for(pilot, lambda: not screen.generate.running and len(written(expt)) == count, 60)


async def test_generate_enter_and_ctrl_r_run_the_planners_jobs(sample_root: Path) -> None:
    expt = sample_root / "inst-templates" / "sample"
    experiment = load_experiment(expt)
    app = ConvogenApp(sample_root, "sample", load_model=False, seed=SEED)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open(pilot, app)
        seeds = screen.session.seeds().seeds
        screen.session.set_picked(seeds[:2])
        screen.session.set_persona_choice("all")
        await pilot.press("f5", "ctrl+g")
        await _wait_written(pilot, screen, expt, 12)
        request = PlanRequest(seeds=seeds[:2], personas="all", again=True, base_seed=SEED, draw_seed=SEED)
        expected = cells_of(plan(request, experiment).jobs)
        assert sorted(written(expt)) == sorted(expected)

        screen.session.set_persona_choice("random")
        await pilot.press("f4")
        table = screen.query_one("#seed-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 20 and app.focused is table)
        await pilot.press("down", "down", "enter")  # the third seed, now
        await _wait_written(pilot, screen, expt, 13)
        request = PlanRequest(seeds=seeds[2:3], again=True, base_seed=SEED, draw_seed=SEED)
        (job,) = plan(request, experiment).jobs
        assert written(expt)[-1] == cells_of([job])[0]

        await pilot.press("f5", "ctrl+r")  # the last seed and persona again
        await _wait_written(pilot, screen, expt, 14)
        assert written(expt)[-1] == cells_of(plan(PlanRequest(cells=[job.cell]), experiment).jobs)[0]


async def test_review_regenerate_runs_the_planners_job(sample_root: Path) -> None:
    expt = sample_root / "inst-templates" / "sample"
    fake_conversation(expt, "c0", "1700000000000000004", ("distrust", "cynical"), 1_700_000_000.0)
    app = ConvogenApp(sample_root, "sample", load_model=False, seed=SEED)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open(pilot, app)
        await pilot.press("f6")
        table = screen.query_one("#rev-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        table.focus()
        await wait_for(pilot, lambda: app.focused is table)
        await pilot.press("g")
        await wait_for(pilot, lambda: len(written(expt)) == 2 and not screen.generate.running, 60)
    persona = load_experiment(expt).personas()
    (cynic,) = [p for p in persona if p.label == "distrust x cynical"]
    request = PlanRequest(cells=[Cell(Seed("1700000000000000004", "seed tweet"), cynic)], base_seed=SEED)
    (job,) = plan(request, load_experiment(expt)).jobs
    new = [w for w in written(expt) if w[3] is not None]
    assert new == cells_of([job])
    assert job.random_seed == job_random_seed(SEED, "1700000000000000004", "distrust", "cynical")


async def test_restyling_the_conversations_without_a_twin_runs_the_planners_restyle_jobs(
    sample_root: Path,
) -> None:
    """`t` on Generate, or its palette command: one restyle pass per conversation without a twin."""
    expt = sample_root / "inst-templates" / "sample"
    fake_conversation(expt, "c0", "1700000000000000004", ("distrust", "cynical"), 1_700_000_000.0, twin=False)
    fake_conversation(expt, "c1", "1700000000000000005", ("belonging", "earnest"), 1_700_000_001.0)
    app = ConvogenApp(sample_root, "sample", load_model=False, seed=SEED)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open(pilot, app)
        jobs = plan(PlanRequest(kind="restyle", base_seed=SEED), load_experiment(expt)).jobs
        assert [(j.conv_id, j.passes) for j in jobs] == [("c0", ("restyle",))]
        (restyle,) = [c for c in screen.palette_commands() if c.help == "t on Generate"]
        restyle.run()
        twin = expt / "restyled-conversations" / "c0.json"
        await wait_for(pilot, lambda: twin.exists() and not screen.generate.running, 60)
    written_seed = json.loads(twin.read_text())["provenance"]["random_seed"]
    assert written_seed == jobs[0].pass_seed("restyle")


async def test_judging_from_the_app_runs_the_planners_judge_jobs(sample_root: Path) -> None:
    """`J` on Generate, or its palette command: one judge pass per restyled pair not judged yet,
    its judgment written beside the pair with the scores the (scripted) judge gave."""
    expt = sample_root / "inst-templates" / "sample"
    fake_conversation(expt, "c0", "1700000000000000004", ("distrust", "cynical"), 1_700_000_000.0)
    fake_conversation(
        expt, "c1", "1700000000000000005", ("belonging", "earnest"), 1_700_000_001.0, twin=False
    )
    criteria = json.loads((expt / "expt-setup.json").read_text())["judge"]["criteria"]
    answer = json.dumps({**dict.fromkeys(criteria, 4), "rationale": "fine"})
    app = ConvogenApp(sample_root, "sample", load_model=False, seed=SEED)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen))
        app.post_message(ModelReady(ScriptedBackend(default=Script(answer))))
        await wait_for(pilot, lambda: app.session is not None and app.session.backend is not None)
        screen = app.screen
        assert isinstance(screen, ExperimentScreen)
        jobs = plan(PlanRequest(kind="judge", base_seed=SEED), load_experiment(expt)).jobs
        assert [(j.conv_id, j.passes) for j in jobs] == [("c0", ("judge",))]
        (judge,) = [c for c in screen.palette_commands() if c.help == "J on Generate"]
        judge.run()
        judgment = expt / "judgments" / "c0.json"
        await wait_for(pilot, lambda: judgment.exists() and not screen.generate.running, 60)
    scores = json.loads(judgment.read_text())["scores"]
    assert set(scores) == set(criteria) and set(scores.values()) == {4}
    assert not (expt / "judgments" / "c1.json").exists()  # no twin: nothing to judge yet
