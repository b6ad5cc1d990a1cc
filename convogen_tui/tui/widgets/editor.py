"""The text editor of the app: Esc always leaves it, whatever Tab does inside; find and go to line.

In a code editor Tab indents (Textual then treats Esc as "leave"); in a prose editor Tab moves on
and Esc did nothing. Here Esc leaves both, so one rule holds everywhere: Esc, then Tab / shift+Tab
or any key of the screen. Editors say so in their border.

``ctrl+f`` opens a one-line find bar under the editor (Enter: next match, wrapping; Esc: back to
the editor), ``ctrl+j`` (or ``alt+g``: ctrl+g generates) the same bar asking for a line number.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import ContentSwitcher, Input, Static, TextArea
from textual.widgets.text_area import Selection

Mode = Literal["find", "line"]


def find_next(text: str, query: str, after: int) -> tuple[int, int, int] | None:
    """(start of the next match at or after ``after``, wrapping; its number; how many there are).

    Case is ignored unless the query has a capital letter (smart case, as in vim and less).
    """
    if not query:
        return None
    hay, needle = (text, query) if query != query.lower() else (text.lower(), query.lower())
    starts = []
    at = hay.find(needle)
    while at != -1:
        starts.append(at)
        at = hay.find(needle, at + 1)
    if not starts:
        return None
    number = next((i for i, start in enumerate(starts) if start >= after), 0)
    return starts[number], number + 1, len(starts)


class FindBar(Horizontal):
    """One line under an editor: what to find (or the line to go to), and what came of it."""

    DEFAULT_CSS = """
    FindBar { height: 1; background: $boost; }
    FindBar > .find-label { width: auto; padding: 0 1; }
    FindBar > Input, FindBar > Input:focus { width: 1fr; height: 1; border: none; padding: 0; }
    FindBar > .find-result { width: auto; padding: 0 1; color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", tooltip="close the bar, back to the editor"),
    ]

    def __init__(self, editor: Editor, mode: Mode) -> None:
        super().__init__()
        self.editor = editor
        self.mode: Mode = mode

    def compose(self) -> ComposeResult:
        yield Static("", classes="find-label")
        yield Input(id=f"{self.editor.id or 'editor'}-find")
        yield Static("", classes="find-result", markup=False)

    def on_mount(self) -> None:
        self.ask(self.mode)

    def ask(self, mode: Mode) -> None:
        """Switch to finding or to a line number, and take the focus."""
        self.mode = mode
        lines = self.editor.document.line_count
        self.query_one(".find-label", Static).update(
            "Find:" if mode == "find" else f"Go to line (1-{lines}):"
        )
        field = self.query_one(Input)
        field.type = "text" if mode == "find" else "integer"
        if mode == "line":
            field.value = ""
        self.say("Enter: next · Esc: close" if mode == "find" else "Enter: go · Esc: close")
        field.focus()

    def say(self, text: str) -> None:
        self.query_one(".find-result", Static).update(text)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.mode == "find":
            self.say(self.editor.find(event.value))
        elif event.value.strip().isdigit():
            self.editor.go_to_line(int(event.value))
            self.action_close()

    def action_close(self) -> None:
        self.editor.focus()
        self.remove()


def find_bindings() -> list[BindingType]:
    """Find and go to line: the editor's own (over TextArea's ctrl+f, delete word), and its pane's,
    so that help lists them and they work wherever the focus is in the pane."""
    return [
        Binding("ctrl+f", "find", "Find", show=False, tooltip="find in the editor (Enter: next; Esc closes)"),
        Binding("ctrl+j,alt+g", "go_to_line", "Line", show=False, tooltip="go to a line of the editor"),
    ]


class Editor(TextArea):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "leave", "Leave editor", show=False, tooltip="leave the editor"),
        *find_bindings(),
    ]

    def action_leave(self) -> None:
        self.screen.focus_next()

    def action_find(self) -> None:
        self._bar("find")

    def action_go_to_line(self) -> None:
        self._bar("line")

    def _bar(self, mode: Mode) -> None:
        """Open (or switch) the bar, under the editor or under the switcher that holds it."""
        bars = [bar for bar in self.app.query(FindBar) if bar.editor is self]
        if bars:
            bars[0].ask(mode)
            return
        child: Widget = self
        while isinstance(child.parent, ContentSwitcher):
            child = child.parent
        if isinstance(child.parent, Widget):
            child.parent.mount(FindBar(self, mode), after=child)

    def find(self, query: str) -> str:
        """Select the next match after the cursor; say which of how many, or that there is none."""
        after = self.document.get_index_from_location(self.selection.end)
        if self.selected_text and self.selected_text.lower() == query.lower():
            after = self.document.get_index_from_location(self.selection.start) + 1
        found = find_next(self.text, query, after)
        if found is None:
            return "no match" if query else ""
        start, number, count = found
        self.selection = Selection(
            self.document.get_location_from_index(start),
            self.document.get_location_from_index(start + len(query)),
        )
        self.scroll_cursor_visible(center=True)
        return f"{number}/{count}"

    def go_to_line(self, line: int) -> None:
        """The cursor to the start of a line (1-based, as the gutter counts), kept in view."""
        row = min(max(line, 1), self.document.line_count) - 1
        self.move_cursor((row, 0), center=True)


def takes_text(widget: Widget | None) -> bool:
    """Whether typed characters go into this widget (so letter keys and ? are not shortcuts)."""
    return isinstance(widget, Input) or (isinstance(widget, TextArea) and not widget.read_only)
