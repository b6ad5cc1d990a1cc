"""Modal questions with keyed answers, and a unified diff view (no dependency on the editors)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from convogen_tui.tui.keys import key_label

Choice = tuple[str, str, str]  # key, answer, what it does


class ChoiceDialog(ModalScreen[str | None]):
    """A question with a few answers, one key each; Esc answers None (the safe way out)."""

    def __init__(self, question: str, choices: list[Choice], cancel: str = "cancel") -> None:
        super().__init__()
        self.question = question
        self.choices = choices
        self.cancel = cancel

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="choice"):
            yield Static(self.question, markup=False, id="choice-question")
            lines = Text()
            for key, _answer, label in self.choices:
                lines.append(f" {key_label(key):>5}  ", style="bold")
                lines.append(label + "\n")
            lines.append("   Esc  ", style="bold")
            lines.append(self.cancel)
            yield Static(lines, id="choice-answers")

    def on_key(self, event: events.Key) -> None:
        for key, answer, _label in self.choices:
            if event.key == key:
                event.stop()
                self.dismiss(answer)
                return
        if event.key == "escape":
            event.stop()
            self.dismiss(None)


class DiffDialog(ModalScreen[None]):
    """The differences between a file on disk and the editor, as a unified diff; Esc closes."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "close", "Close")]

    def __init__(self, title: str, diff: str, hint: str = "Esc: back to the choice") -> None:
        super().__init__()
        self.title_text = title
        self.diff = diff
        self.hint = hint

    def compose(self) -> ComposeResult:
        text = Text()
        for line in self.diff.splitlines():
            style = (
                "bold"
                if line.startswith(("---", "+++"))
                else "green"
                if line.startswith("+")
                else "red"
                if line.startswith("-")
                else "cyan"
                if line.startswith("@@")
                else ""
            )
            text.append(line + "\n", style=style)
        with VerticalScroll(classes="dialog wide", id="diff") as scroll:
            scroll.border_title = self.title_text
            scroll.can_focus = True
            yield Static(text)
        yield Static(f"↑ ↓ PgUp PgDn: scroll   {self.hint}", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#diff").focus()

    def action_close(self) -> None:
        self.dismiss(None)
