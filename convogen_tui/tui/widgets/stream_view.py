"""A conversation view that grows as tokens arrive, one block per SocBot or User message.

Appending re-parses only the last block, so the cost of a flush does not grow with the length of
the conversation; the caller batches chunks (every ~50 ms) rather than calling per token.
"""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.widgets import Static

from convogen_tui.core.judging.turns import split_turns
from convogen_tui.tui.cells import display_safe


class StreamView(VerticalScroll, can_focus=True):
    """Scrollable conversation; SocBot and User messages are told apart by colour and a side bar."""

    DEFAULT_CSS = """
    StreamView { height: 1fr; border: round $panel-lighten-2; padding: 0 1; }
    StreamView:focus { border: round $accent; }
    StreamView > .turn { width: 1fr; height: auto; padding: 0 0 0 1; margin: 0 0 0 0; }
    StreamView > .socbot { border-left: outer $accent; color: $text-accent; }
    StreamView > .user { border-left: outer $success; color: $text-success; }
    StreamView > .other { color: $text-muted; }
    StreamView > .placeholder { color: $text-disabled; text-style: italic; }
    """

    def __init__(
        self,
        placeholder: str = "",
        *,
        id: str | None = None,
        classes: str | None = None,
        follow: bool = True,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.placeholder = placeholder
        self.follow = follow  # keep the end in view as text streams in (off: a finished text, from the top)
        self.text = ""
        self._last_start = 0  # offset in self.text where the last block begins
        self._blocks: list[Static] = []

    def on_mount(self) -> None:
        self.clear()

    def clear(self, placeholder: str | None = None) -> None:
        self.text = ""
        self._last_start = 0
        self.remove_children()
        self._blocks = []
        if placeholder is not None:
            self.placeholder = placeholder
        if self.placeholder:
            self.mount(Static(self.placeholder, classes="turn placeholder", markup=False))

    def set_text(self, text: str, placeholder: str | None = None) -> None:
        self.clear(placeholder)
        if text:
            self.append(text)

    def append(self, text: str) -> None:
        """Add streamed text; only the last block (and any new ones) are redrawn."""
        if not text:
            return
        at_end = self.follow and self.scroll_y >= self.max_scroll_y - 1
        if not self._blocks:
            self.remove_children()
        self.text += text
        blocks = split_turns(self.text[self._last_start :])
        offset = self._last_start
        for i, (speaker, body) in enumerate(blocks):
            if i == 0 and self._blocks:
                widget = self._blocks[-1]
                widget.set_classes(f"turn {speaker}")
                widget.update(display_safe(body.rstrip("\n")))
            else:
                widget = Static(display_safe(body.rstrip("\n")), classes=f"turn {speaker}", markup=False)
                self._blocks.append(widget)
                self.mount(widget)
            if i == len(blocks) - 1:
                self._last_start = offset
            offset += len(body)
        if at_end:
            self.call_after_refresh(self.scroll_end, animate=False)
