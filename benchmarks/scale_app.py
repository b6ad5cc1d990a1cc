"""The app's part of benchmarks/scale.py, in its own process: idle CPU on Review and Stats, filter ms.

    python benchmarks/scale_app.py DATASETS IDLE_S

Opens experiment ``scale`` headless (80x24, no model), goes to Review, waits for the listing,
lets it settle, then reads this process's CPU time (every thread: ``getrusage(RUSAGE_SELF)``) over
IDLE_S seconds; types a filter word one key at a time, timing the filter's own work; then the
same idle measure on Stats (F8). Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests/ from here; convogen from PYTHONPATH

from convogen_tui.tui.app import ConvogenApp
from convogen_tui.tui.panes.review import ReviewPane
from convogen_tui.tui.screens.stats import StatsScreen
from convogen_tui.tui.screens.workspace import ExperimentScreen
from tests.tui_helpers import wait_for


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def idle_share(pilot, seconds: float) -> float:  # type: ignore[no-untyped-def]
    """CPU seconds per wall second while the app sits there."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    await asyncio.sleep(seconds)
    return (cpu_seconds() - cpu) / (time.perf_counter() - wall)


async def run(datasets: Path, idle_s: float) -> dict[str, float]:
    app = ConvogenApp(datasets, "scale", load_model=False)
    figures: dict[str, float] = {}
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen), 120)
        screen = app.screen
        pane = screen.query_one(ReviewPane)
        start = time.perf_counter()
        await pilot.press("f6")
        await wait_for(pilot, lambda: len(pane.rows) > 0, 900)
        figures["review_ready_s"] = time.perf_counter() - start
        await asyncio.sleep(min(idle_s, 10))  # settle
        figures["review_idle_cpu"] = await idle_share(pilot, idle_s)
        durations: list[float] = []
        original = pane.filter

        def timed_filter() -> None:
            t = time.perf_counter()
            original()
            durations.append(time.perf_counter() - t)

        pane.filter = timed_filter  # type: ignore[method-assign]
        await pilot.press("slash")
        for key in "wake up":
            before = len(durations)
            await pilot.press("space" if key == " " else key)
            await wait_for(pilot, lambda b=before: len(durations) > b, 60)  # type: ignore[misc]
        pane.filter = original  # type: ignore[method-assign]
        figures["filter_ms"] = statistics.median(durations) * 1000
        figures["filter_ms_max"] = max(durations) * 1000
        await pilot.press("escape")
        start = time.perf_counter()
        await pilot.press("f8")
        await wait_for(
            pilot, lambda: isinstance(app.screen, StatsScreen) and app.screen.stats is not None, 900
        )
        figures["stats_ready_s"] = time.perf_counter() - start
        await asyncio.sleep(min(idle_s, 10))
        figures["stats_idle_cpu"] = await idle_share(pilot, idle_s)
    return figures


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(Path(sys.argv[1]), float(sys.argv[2])))))
