"""Bar charts drawn as text, with axes that say exactly what the bars show.

plotext chose its own ticks: counts read ``2.00 1.67 1.33 0.67 0.33`` (1.00 dropped where two labels
fell on one row) and a bar of 1 reached the 1.33 row; a percent axis stopped at 37.5 while full bars
meant 50. Here the axis is chosen first: round ticks (1, 2, 2.5 or 5 times a power of ten; whole
numbers for counts) up to the first one that covers the largest bar, and each tick sits exactly on
a row (or column), so a bar that reaches a tick's row has that tick's value. Bars are drawn in
eighths of a cell between rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from convogen_tui.tui.cells import fit

UP = " ▁▂▃▄▅▆▇█"  # eighths of a cell, bottom up
RIGHT = " ▏▎▍▌▋▊▉█"  # eighths of a cell, left to right
MULTIPLES = (1.0, 2.0, 2.5, 5.0)
MAX_BAR = 8  # cells: one category does not fill the whole chart


def nice_ticks(largest: float, most: int, integer: bool = False) -> list[float]:
    """0, step, 2·step … up to the first tick at or above ``largest``, in at most ``most`` steps.

    The step is 1, 2, 2.5 or 5 times a power of ten (whole numbers when ``integer``), chosen so
    that the top tick is the lowest round cover of the data (in two steps or more where it can be),
    then the finest such step.
    """
    most = max(most, 1)
    largest = largest if largest > 0 else 1.0
    exponent = math.floor(math.log10(largest / most))
    fits = []  # (top, step) of every round step that needs no more than `most` steps
    for e in range(exponent - 1, exponent + 3):
        for multiple in MULTIPLES:
            step = multiple * 10.0**e
            if integer and (step < 1 or step != int(step)):
                continue
            steps = math.ceil(largest / step - 1e-9)
            if steps <= most:
                fits.append((round(steps * step, 10), step, steps))
    several = [fit for fit in fits if fit[2] >= 2] or fits  # an axis of one step says little
    _top, step, steps = min(several)  # the lowest cover, then the finest step
    return [round(i * step, 10) for i in range(steps + 1)]


def tick_label(value: float) -> str:
    """A tick as people write it: 10 not 10.0, 2.5 stays 2.5."""
    return f"{value:g}" if value != int(value) else str(int(value))


def _place(labels: Sequence[tuple[int, str]], width: int) -> str:
    """Labels at columns (``(column, text)``), left to right, skipping one that would touch the last."""
    line = [" "] * width
    end = -1
    for column, text in labels:
        column = min(column, width - len(text))
        if column <= end or column < 0:
            continue
        line[column : column + len(text)] = list(text)
        end = column + len(text)
    return "".join(line)


def vertical_bars(
    values: Sequence[float], labels: Sequence[str], width: int, height: int, centre: bool = True
) -> list[str]:
    """A histogram in ``height`` rows: bars over a 0 axis, labels under them, integer ticks left.

    ``centre`` puts a bar's label under its middle (categories); otherwise at its left edge (the
    start of a bin).
    """
    plot_rows = height - 2  # the axis row and the label row
    if plot_rows < 1 or not values:
        return []
    ticks = nice_ticks(max(values), max(plot_rows // 2, 1), integer=True)
    steps = len(ticks) - 1
    per_tick = plot_rows // steps
    used = steps * per_tick
    gutter = max(len(tick_label(t)) for t in ticks)
    room = max(width - gutter - 1, len(values))
    bar = min(max((room - len(values) + 1) // len(values), 1), MAX_BAR)
    gap = 1 if (bar + 1) * len(values) - 1 <= room else 0
    eighths = [round(v / ticks[-1] * used * 8) for v in values]
    lines = []
    for row in range(plot_rows, 0, -1):  # row numbers from the axis up
        tick = ticks[row // per_tick] if row <= used and row % per_tick == 0 else None
        axis = (tick_label(tick).rjust(gutter) + "┤") if tick is not None else " " * gutter + "│"
        cells = []
        for filled in eighths:
            part = min(max(filled - (row - 1) * 8, 0), 8)
            cells.append(UP[part] * bar + " " * gap)
        lines.append(axis + "".join(cells).rstrip())
    span = len(values) * (bar + gap) - gap
    lines.append("0".rjust(gutter) + "┼" + "─" * span)
    offset = gutter + 1
    marks = []
    for i, label in enumerate(labels):
        start = offset + i * (bar + gap)
        marks.append((start + (bar - len(label)) // 2 if centre else start, label))
    lines.append(_place(marks, max(width, offset + span)).rstrip())
    return lines


def horizontal_bars(
    labels: Sequence[str], values: Sequence[float], width: int, height: int, unit: str = ""
) -> list[str]:
    """One bar a row (as many as fit above the axis), round ticks on the axis below, ``unit`` after them."""
    rows = min(len(values), height - 2)
    if rows < 1:
        return []
    labels, values = labels[:rows], values[:rows]
    gutter = min(max(len(label) for label in labels), max(16, width // 2))  # wider charts: whole names
    room = width - gutter - 2  # the ┤ and a column for the last tick label's overhang
    for most in range(max(room // 5, 1), 0, -1):  # as many ticks as leave 2 cells between labels
        ticks = nice_ticks(max(values), most)
        steps = len(ticks) - 1
        per_tick = max(room // steps, 1)
        if all(len(tick_label(t)) + 2 <= per_tick for t in ticks):
            break
    used = steps * per_tick
    lines = []
    for label, value in zip(labels, values, strict=True):
        filled = round(value / ticks[-1] * used * 8)
        full, part = divmod(filled, 8)
        lines.append(fit(label, gutter).rjust(gutter) + "┤" + "█" * full + (RIGHT[part] if part else ""))
    axis = ["─"] * (used + 1)
    for i in range(len(ticks)):
        axis[i * per_tick] = "┬"
    lines.append(" " * gutter + "└" + "".join(axis[1:]))
    marks = [(gutter + i * per_tick, tick_label(t)) for i, t in enumerate(ticks)]
    marks[-1] = (marks[-1][0], marks[-1][1] + unit)
    lines.append(_place(marks, max(width, gutter + used + 1)).rstrip())
    return lines


class BarChart(Static):
    """A bordered bar chart that redraws itself to its size; :meth:`show` gives it the data."""

    DEFAULT_CSS = """
    BarChart { border: round $panel-lighten-2; height: 1fr; padding: 0 0 0 1; overflow: hidden; }
    """

    def __init__(self, title: str, *, horizontal: bool = False, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self.border_title = title
        self.horizontal = horizontal
        self.labels: list[str] = []
        self.values: list[float] = []
        self.centre = True
        self.unit = ""
        self.empty = "nothing yet"

    def show(
        self,
        labels: Sequence[str],
        values: Sequence[float],
        *,
        title: str | None = None,
        centre: bool = True,
        unit: str = "",
        empty: str = "nothing yet",
    ) -> None:
        self.labels, self.values = list(labels), list(values)
        self.centre, self.unit, self.empty = centre, unit, empty
        if title is not None:
            self.border_title = title
        self.update(self._draw())

    def on_resize(self) -> None:
        self.update(self._draw())

    def _draw(self) -> Text:
        size = self.content_size
        if not self.values:
            return Text(self.empty, style="dim")
        if self.horizontal:
            lines = horizontal_bars(self.labels, self.values, size.width, size.height, self.unit)
        else:
            lines = vertical_bars(self.values, self.labels, size.width, size.height, self.centre)
        return Text("\n".join(line[: size.width] for line in lines), no_wrap=True, overflow="crop")
