"""Key-to-screen latency of the app while a model streams (and idle, for comparison).

Drives the real app headless at 80x24 on a copy of the sample experiment with the embedded model.
For each key press it measures the time from sending the key to the first frame the app renders
after the key's effect is visible in the widget state (a tab switch, or a typed character in the
template editor). Prints median, p95 and max in milliseconds, and the tokens streamed meanwhile.

    python benchmarks/tui_latency.py [--presses 20] [--max-tokens 400]
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

from textual.widgets import TabbedContent, TextArea

from convogen_tui.tui.app import ConvogenApp
from convogen_tui.tui.screens.workspace import ExperimentScreen
from convogen_tui.tui.widgets.stream_view import StreamView
from tests.tui_helpers import copy_sample, wait_for


async def measure(pilot, frames: list[float], key: str, done: Callable[[], bool]) -> float:  # type: ignore[no-untyped-def]
    """Seconds from sending ``key`` to the first frame drawn after ``done()`` holds."""
    start = time.perf_counter()
    press = asyncio.create_task(pilot.press(key))
    while not done():
        await asyncio.sleep(0.0005)
    changed = time.perf_counter()
    while not frames or frames[-1] < changed:
        await asyncio.sleep(0.0005)
    first_frame = next(f for f in frames if f >= changed)
    await press
    return first_frame - start


async def run(presses: int, max_tokens: int, stream: bool) -> dict[str, list[float] | int]:
    root = copy_sample(Path(tempfile.mkdtemp()))
    app = ConvogenApp(root, "sample", max_tokens=max_tokens)
    frames: list[float] = []
    original = app._display

    def record(screen, renderable) -> None:  # type: ignore[no-untyped-def]
        if renderable is not None:
            frames.append(time.perf_counter())
        original(screen, renderable)

    app._display = record  # type: ignore[method-assign]
    out: dict[str, list[float] | int] = {"tabs": [], "typing": [], "tokens": 0}
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen))
        await wait_for(pilot, lambda: app.session is not None and app.session.backend is not None, 120)
        screen = app.screen
        assert isinstance(screen, ExperimentScreen)
        tabs = screen.query_one(TabbedContent)
        if stream:
            await pilot.press("ctrl+g")
            view = screen.query_one("#gen-conv", StreamView)
            await wait_for(pilot, lambda: bool(view.text), 120)
        start_tokens = screen.generate.model.tokens_done()
        for i in range(presses):
            key, pane = ("f4", "seeds") if i % 2 == 0 else ("f5", "generate")
            out["tabs"].append(await measure(pilot, frames, key, lambda p=pane: tabs.active == p))  # type: ignore[union-attr]
        await pilot.press("f3")
        editor = screen.query_one("#tpl-conv-gen", TextArea)
        editor.focus()
        await pilot.pause(0.1)
        for _ in range(presses):
            before = len(editor.text)
            out["typing"].append(await measure(pilot, frames, "x", lambda b=before: len(editor.text) > b))  # type: ignore[union-attr]
        out["tokens"] = screen.generate.model.tokens_done() - start_tokens if screen.generate.running else -1
        if stream and screen.generate.running:
            screen.generate.action_cancel()
            await wait_for(pilot, lambda: not screen.generate.running, 60)
    return out


def summary(name: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"{name:<7} median {statistics.median(ms):6.1f} ms   p95 {p95:6.1f} ms   max {ms[-1]:6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=400)
    args = parser.parse_args()
    print(f"cpus {os.cpu_count()} · load average {os.getloadavg()[0]:.1f}")
    for stream in (False, True):
        result = asyncio.run(run(args.presses, args.max_tokens, stream))
        label = "while streaming" if stream else "idle"
        tokens = result["tokens"]
        extra = f" ({tokens} tokens streamed during the presses)" if stream and tokens != -1 else ""
        print(f"key-to-screen, {label}{extra}:")
        print("  " + summary("tabs", result["tabs"]))  # type: ignore[arg-type]
        print("  " + summary("typing", result["typing"]))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
