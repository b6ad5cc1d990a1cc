"""Key-to-screen latency of the app: tab switches and typing, idle and while conversations stream.

Drives the real app headless at 80x24 on a copy of the sample experiment. For each key press it
measures the time from sending the key to the first frame the app renders after the key's effect is
visible in the widget state (a tab switch, or a typed character in the template editor). Prints
median, p95 and max in milliseconds, the tokens streamed meanwhile, and the load average (the
machine may be shared: compare figures taken at a similar load).

Loads: ``idle`` (the scripted backend as the loaded model, nothing running), ``16 streams`` (16
conversations at once through the scripted batched backend, which paces its tokens like a GPU
server), and with ``--llama`` one real stream of the embedded model through llama.cpp.

    python benchmarks/tui_latency.py [--presses 20] [--streams 16] [--llama] [--max-tokens 400]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import convogen_tui.tui  # noqa: F401  (first: the app's frame rate is set before Textual is imported)

# isort: split
from textual.widgets import TabbedContent, TextArea

from convogen_tui.tui.app import ConvogenApp
from convogen_tui.tui.messages import ModelReady, RunJobs
from convogen_tui.tui.screens.workspace import ExperimentScreen
from convogen_tui.tui.widgets.stream_view import StreamView
from tests.scripted import EIGHT_TURNS, Script, ScriptedBatchBackend
from tests.tui_helpers import copy_sample, wait_for

TAB_KEYS = [("f4", "seeds"), ("f5", "generate"), ("f6", "review"), ("f2", "setup"), ("f3", "templates")]


CPU: list[float] = []  # the process's CPU seconds per press, beside each wall-clock figure


async def measure(pilot, frames: list[float], key: str, done: Callable[[], bool]) -> float:  # type: ignore[no-untyped-def]
    """Seconds from sending ``key`` to the first frame drawn after ``done()`` holds.

    The CPU time the process spent meanwhile goes to ``CPU``: on a shared, busy machine the wall
    time waits for other processes too, the CPU time is what the app itself needed.
    """
    cpu = time.process_time()
    start = time.perf_counter()
    press = asyncio.create_task(pilot.press(key))
    while not done():
        await asyncio.sleep(0.0005)
    changed = time.perf_counter()
    while not frames or frames[-1] < changed:
        await asyncio.sleep(0.0005)
    first_frame = next(f for f in frames if f >= changed)
    CPU.append(time.process_time() - cpu)
    await press
    return first_frame - start


def scripted(streams: int) -> ScriptedBatchBackend:
    """Long answers, paced: about 60 tokens a second per stream, as a GPU server gives 16 streams."""
    return ScriptedBatchBackend(default=Script(EIGHT_TURNS * 30, delay_s=1 / (60 * streams)), slots=streams)


async def start_streams(pilot, screen: ExperimentScreen, streams: int) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    assert app.session is not None
    seeds = app.session.seeds().seeds
    jobs = app.session.jobs_for((seeds * streams)[:streams])
    screen.post_message(RunJobs(jobs))
    await wait_for(
        pilot, lambda: screen.generate.running and screen.generate.model.tokens_done() > streams, 60
    )


async def run(presses: int, max_tokens: int, load: str, streams: int) -> dict[str, list[float] | int]:
    root = copy_sample(Path(tempfile.mkdtemp()))
    llama = load == "llama"
    # scripted streams run long (about 40 s a pass) so the keys are measured while they stream
    app = ConvogenApp(root, "sample", max_tokens=max_tokens if llama else 100_000, load_model=llama)
    frames: list[float] = []
    original = app._display

    def record(screen, renderable) -> None:  # type: ignore[no-untyped-def]
        if renderable is not None:
            frames.append(time.perf_counter())
        original(screen, renderable)

    app._display = record  # type: ignore[method-assign]
    out: dict[str, list[float] | int] = {
        "tabs": [],
        "typing": [],
        "tokens": 0,
        "tabs_cpu": [],
        "typing_cpu": [],
    }
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen))
        if not llama:
            app.post_message(ModelReady(scripted(max(streams, 1))))
        await wait_for(pilot, lambda: app.session is not None and app.session.backend is not None, 120)
        screen = app.screen
        assert isinstance(screen, ExperimentScreen)
        tabs = screen.query_one(TabbedContent)
        if llama:
            await pilot.press("ctrl+g")
            view = screen.query_one("#gen-conv", StreamView)
            await wait_for(pilot, lambda: bool(view.text), 120)
        elif load == "streams":
            await start_streams(pilot, screen, streams)
        await pilot.pause(0.3)
        start_tokens = screen.generate.model.tokens_done()
        CPU.clear()
        for i in range(presses):
            key, pane = TAB_KEYS[i % len(TAB_KEYS)]
            out["tabs"].append(await measure(pilot, frames, key, lambda p=pane: tabs.active == p))  # type: ignore[union-attr]
        out["tabs_cpu"], CPU[:] = list(CPU), []
        await pilot.press("f3")
        editor = screen.query_one("#tpl-conv-gen", TextArea)
        await pilot.press("e")
        await wait_for(pilot, lambda: app.focused is editor)
        await pilot.pause(0.1)
        for _ in range(presses):
            before = len(editor.text)
            out["typing"].append(await measure(pilot, frames, "x", lambda b=before: len(editor.text) > b))  # type: ignore[union-attr]
        out["typing_cpu"] = list(CPU)
        out["tokens"] = screen.generate.model.tokens_done() - start_tokens if screen.generate.running else -1
        if screen.generate.running:
            screen.generate.action_cancel()
            await wait_for(pilot, lambda: not screen.generate.running, 60)
    return out


def percentile(ms: list[float], q: float) -> float:
    return ms[min(len(ms) - 1, round(q * (len(ms) - 1)))]


def summary(name: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    return (
        f"{name:<7} median {statistics.median(ms):6.1f} ms   p95 {percentile(ms, 0.95):6.1f} ms"
        f"   max {ms[-1]:6.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=20)
    parser.add_argument("--streams", type=int, default=16, help="scripted streams at once (0: skip)")
    parser.add_argument("--llama", action="store_true", help="also one real stream of the embedded model")
    parser.add_argument("--max-tokens", type=int, default=400)
    args = parser.parse_args()
    loads = ["idle"] + (["streams"] if args.streams else []) + (["llama"] if args.llama else [])
    for load in loads:
        before = os.getloadavg()[0]
        result = asyncio.run(run(args.presses, args.max_tokens, load, args.streams))
        label = {"idle": "idle", "streams": f"{args.streams} streams", "llama": "1 llama.cpp stream"}[load]
        tokens = result["tokens"]
        extra = f", {tokens} tokens streamed during the presses" if tokens != -1 and load != "idle" else ""
        print(f"key-to-screen, {label} (cpus {os.cpu_count()}, load average {before:.1f}{extra}):")
        for name in ("tabs", "typing"):
            print(f"  {summary(name, result[name])}   (CPU {summary('', result[name + '_cpu']).strip()})")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
