"""The title bar: the screen's title on the left, the model line on the right, never cut.

Textual's Header centres ``title — sub_title`` between an icon and a clock space, so at 80 columns
the model line lost its end (``… · CPU…``, the thread count gone). Here the model line's facts
(context, where it runs, threads) always show whole; what gives way first is the app's name, then
the model's name (shortened with ``…``; the Models screen, F7, shows it whole), then the title.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.widget import Widget

SEP = " · "
MIN_NAME = 8  # a model name is not shortened below this many cells
APP_PREFIX = "ConvoGen · "


def _clip(text: str, width: int) -> str:
    """Shorten to ``width`` cells with a trailing ``…``."""
    if cell_len(text) <= width:
        return text
    out = ""
    for char in text:
        if cell_len(out + char) > width - 1:
            break
        out += char
    return out + "…"


def fit_title(title: str, status: str, width: int) -> tuple[str, str]:
    """(left, right) for ``width`` cells, with at least two spaces between them.

    The status's first part (a model name) may shrink; the rest of it (ctx, CPU/GPU, threads) never
    does. The title loses the app's name first, then shrinks too.
    """
    room = width - 2  # a space at each edge

    def fits(left: str, right: str) -> bool:
        return cell_len(left) + 2 + cell_len(right) <= room

    if fits(title, status):
        return title, status
    if title.startswith(APP_PREFIX):
        title = title.removeprefix(APP_PREFIX)
        if fits(title, status):
            return title, status
    name, sep, facts = status.partition(SEP)
    if sep:
        spare = room - cell_len(title) - 2 - cell_len(sep + facts)
        short = _clip(name, max(spare, MIN_NAME))
        status = short + sep + facts
        if fits(title, status):
            return title, status
    return _clip(title, max(room - 2 - cell_len(status), 1)), _clip(status, room)


class TitleBar(Widget):
    """One line at the top: ``screen.title`` left, ``screen.sub_title`` (the model line) right."""

    DEFAULT_CSS = """
    TitleBar { dock: top; height: 1; width: 1fr; background: $panel; color: $foreground; }
    """

    def on_mount(self) -> None:
        self.watch(self.screen, "title", self._changed)
        self.watch(self.screen, "sub_title", self._changed)

    def _changed(self) -> None:
        self.refresh()

    def render(self) -> Text:
        title = self.screen.title if self.screen.title is not None else self.app.title
        status = self.screen.sub_title or ""
        width = self.size.width
        left, right = fit_title(title, status, width)
        gap = max(width - 2 - cell_len(left) - cell_len(right), 1)
        return Text.assemble(" ", (left, "bold"), " " * gap, right, " ", no_wrap=True, overflow="crop")
