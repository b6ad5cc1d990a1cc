"""The Textual app: a thin shell over convogen_tui.core."""

import os

#: Frames a second Textual may draw (its own default is 60). A key's effect waits for the next
#: frame, so at 60 a tab switch took ~17 ms more (benchmarks/tui_latency.py: p95 55 -> 39 ms on a
#: quiet machine); an idle screen draws no frame either way. Read by Textual when it is first
#: imported, so set here, before the app imports it; TEXTUAL_FPS in the environment still wins.
FRAMES_PER_SECOND = 120
os.environ.setdefault("TEXTUAL_FPS", str(FRAMES_PER_SECOND))
