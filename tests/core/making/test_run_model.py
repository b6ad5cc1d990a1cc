"""The run model (core/making/run_model.py): one fold of the pipeline's events that the CLI's
progress and the app's Generate pane both draw. Tested here without a UI, then both faces are fed
one event sequence and must show the same counts and the same ETA."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from textual.widgets import ProgressBar

from convogen_tui.cli.progress import PlainReporter, RichReporter
from convogen_tui.core.making import pipeline as run
from convogen_tui.core.making.backend import GenerationStats
from convogen_tui.core.making.check import seeds_for
from convogen_tui.core.making.experiment import Persona, load_experiment
from convogen_tui.core.making.planner import Job
from convogen_tui.core.making.run_model import RunModel
from convogen_tui.core.making.seeds import Seed
from convogen_tui.tui.panes.generate import GeneratePane
from tests.scripted import Script, ScriptedBackend, ScriptedBatchBackend
from tests.tui.test_generate_pane import GenerateHost
from tests.tui_helpers import sample_root, wait_for

__all__ = ["sample_root"]  # the fixture, imported for pytest
PERSONA = Persona("distrust", "cynical", "m", "d")
A = Job(Seed("111", "seed a"), PERSONA, 1)
B = Job(Seed("222", "seed b"), PERSONA, 2)
TWIN = Job(Seed("333", "seed c"), PERSONA, 3, "c-old", "SocBot: hi\nUser: no")  # restyle only


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def finished(job: Job, phase: str, tokens: int) -> run.JobFinished:
    conv_id = job.conv_id or f"c-{job.seed.tweet_id}"
    return run.JobFinished(
        job, phase, conv_id, Path(f"{conv_id}.json"), GenerationStats(completion_tokens=tokens)
    )  # type: ignore[arg-type]


def test_the_eta_is_known_from_the_first_tokens() -> None:
    """Tokens at the measured rate; before any pass ends, max_tokens bounds each one."""
    clock = Clock()
    model = RunModel(clock)
    model.handle(run.RunStarted(2, "m", "CPU", passes=4, max_tokens=100))
    assert model.eta_text() == "ETA -:--:--"
    model.handle(run.JobStarted(A, 0, 2, "generate"))
    model.handle(run.TokenChunk(A, "generate", "a", 1, 0.1))
    clock.now = 110.0
    model.handle(run.TokenChunk(A, "generate", "b", 50, 10.0))
    # 50 tokens in 10 s = 5 tok/s; left: 50 of this pass + 3 passes x 100 = 350 tokens = 70 s
    assert model.seconds_left() == pytest.approx(70.0) and model.eta_text() == "ETA 0:01:10"
    model.handle(finished(A, "generate", 60))
    # passes now average 60 tokens: 3 x 60 = 180 tokens at 6 tok/s
    assert model.seconds_left() == pytest.approx(30.0)
    assert (model.passes_done, model.jobs_done, model.conversations) == (1, 0, 1)


def test_a_restyle_only_job_is_one_pass_and_a_skip_drops_what_follows() -> None:
    model = RunModel(Clock())
    jobs = [A, B, TWIN]
    model.handle(run.RunStarted(3, "m", "CPU", passes=sum(len(j.passes) for j in jobs), max_tokens=10))
    assert model.passes == 5  # two generations with their restyles, one restyle alone
    model.handle(run.JobStarted(TWIN, 2, 3, "restyle", prompt_tokens=40))
    model.handle(run.PromptProgress(TWIN, "restyle", 20, 40))
    assert model.streams[("333", PERSONA.label, 3, "restyle")].state() == "reading prompt 20/40"
    model.handle(finished(TWIN, "restyle", 7))
    assert (model.passes_done, model.jobs_done, model.restyled) == (1, 1, 1)
    model.handle(run.JobStarted(A, 0, 3, "generate"))
    model.handle(run.JobSkipped(A, "generate"))  # its restyle will never run
    assert (model.passes, model.jobs_done, model.skipped) == (3, 2, 1)
    model.handle(run.JobFailed(B, "restyle", "server said no"))  # its conversation was written
    assert (model.passes, model.jobs_done, model.failed) == (2, 3, 1)
    assert not model.streams


def test_a_scripted_run_folds_into_the_counts_the_pipeline_reports(sample: Path) -> None:
    experiment = load_experiment(sample)
    pipeline = run.Pipeline(experiment, ScriptedBackend([Script(), Script(), Script(fail="no"), Script()]))
    jobs = pipeline.plan(seeds_for(experiment).seeds, limit=3, seed=1).jobs
    model = RunModel()
    for event in pipeline.run(jobs):
        model.handle(event)
    result = model.result
    assert result is not None and not model.running
    assert (model.conversations, model.restyled, model.failed) == (result.conversations, result.restyled, 1)
    # the second generation failed: it and its restyle drop out of the six passes planned
    assert model.jobs_done == 3 and model.passes_done == 4 and model.passes == 4
    assert model.finished_tokens == result.completion_tokens


# the same run drawn twice ----------------------------------------------------------------------
def _sequence() -> list[run.Event]:
    return [
        run.RunStarted(2, "m", "CPU", parallel=2, passes=4, max_tokens=100),
        run.JobStarted(A, 0, 2, "generate", 30),
        run.TokenChunk(A, "generate", "SocBot: a", 1, 0.1),
        run.JobStarted(B, 1, 2, "generate", 30),
        run.TokenChunk(B, "generate", "SocBot: b", 10, 1.0),
        run.TokenChunk(A, "generate", " more", 40, 8.0),
        finished(A, "generate", 40),
        run.JobSkipped(B, "generate"),
    ]


async def test_the_cli_and_the_app_draw_the_same_counts_and_eta(sample_root: Path) -> None:
    clock = Clock()
    plain_out = io.StringIO()
    plain = PlainReporter(plain_out, RunModel(clock))
    rich = RichReporter(RunModel(clock), Console(file=io.StringIO(), width=100))
    app = GenerateHost(sample_root, ScriptedBatchBackend())
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(GeneratePane)
        pane.model.clock = clock
        pane.running = True
        for event in _sequence():
            clock.now += 2.0
            plain.handle(event)
            rich.handle(event)
            pane.events.append(event)
            await wait_for(pilot, lambda: not pane.events)  # folded at the same time as the CLI's
        bar = pane.query_one("#gen-progress", ProgressBar)
        await wait_for(pilot, lambda: bar.total == 2)
        # A's conversation is written, B's skip took its restyle along: 1 of 2 passes left to run
        eta = pane.model.eta_text()
        assert eta == plain.model.eta_text() == rich.model.eta_text() != "ETA -:--:--"
        task = rich.progress.tasks[0]
        assert (task.completed, task.total) == (bar.progress, bar.total) == (1, 2)
        assert task.fields["eta"] == eta
        assert eta in str(pane.query_one("#gen-status").render())
        assert "generate: 40 tokens, 0.0 tok/s, stop -> c-111.json, ETA " in plain_out.getvalue()
        for face in (plain.model, rich.model, pane.model):
            assert (face.jobs_done, face.passes_done, face.conversations, face.skipped) == (1, 1, 1, 1)
        pane.events.append(run.RunFinished(conversations=1, skipped=1))
        await wait_for(pilot, lambda: not pane.running)
