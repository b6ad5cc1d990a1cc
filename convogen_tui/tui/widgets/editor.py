"""The text editor of the app: Esc always leaves it, whatever Tab does inside.

In a code editor Tab indents (Textual then treats Esc as "leave"); in a prose editor Tab moves on
and Esc did nothing. Here Esc leaves both, so one rule holds everywhere: Esc, then Tab / shift+Tab
or any key of the screen. Editors say so in their border.
"""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import Input, TextArea


class Editor(TextArea):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "leave", "Leave editor", show=False, tooltip="leave the editor"),
    ]

    def action_leave(self) -> None:
        self.screen.focus_next()


def takes_text(widget: Widget | None) -> bool:
    """Whether typed characters go into this widget (so letter keys and ? are not shortcuts)."""
    return isinstance(widget, Input) or (isinstance(widget, TextArea) and not widget.read_only)
