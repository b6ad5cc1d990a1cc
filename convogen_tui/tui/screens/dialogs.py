"""Small modal dialogs: ask for a name or a number, show and edit persona texts, F1 help."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static, TextArea

from convogen_tui.core.errors import StorageError
from convogen_tui.core.files import atomic_write_text


class AskDialog(ModalScreen[str | None]):
    """One line of input; Enter answers, Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, markup=False)
            yield Input(self.value, placeholder=self.placeholder, id="answer")
            yield Static("Enter: OK   Esc: cancel", classes="dialog-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class HydrateDialog(ModalScreen[tuple[str, str] | None]):
    """The ids file and the output seed file for a hydrate; Enter moves on, then starts; Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, ids: str = "", out: str = "") -> None:
        super().__init__()
        self.ids = ids
        self.out = out

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("Hydrate tweet ids through the X API (token: X_BEARER_TOKEN)", markup=False)
            yield Static("Ids file (one a line, or TSV/CSV with tweet_id):", markup=False)
            yield Input(self.ids, placeholder="ids.txt", id="hydrate-ids")
            yield Static("Write the seeds to (resumes if it exists):", markup=False)
            yield Input(self.out, placeholder="seeds.tsv", id="hydrate-out")
            yield Static("Enter: next / start   Esc: cancel", classes="dialog-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        ids = self.query_one("#hydrate-ids", Input).value.strip()
        out = self.query_one("#hydrate-out", Input).value.strip()
        if event.input.id == "hydrate-ids" or not ids:
            self.query_one("#hydrate-out" if ids else "#hydrate-ids", Input).focus()
            return
        if not out:
            return
        self.dismiss((ids, out))

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmDialog(ModalScreen[bool]):
    """A yes/no question; y or Enter confirms, n or Esc cancels (the safe answer is the default)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y,enter", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, markup=False)
            yield Static("y / Enter: yes   n / Esc: no", classes="dialog-hint")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PersonaDialog(ModalScreen[bool]):
    """The motivation and disposition texts of one persona, side by side; ctrl+s saves both files."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save"),
        Binding("escape", "close", "Close"),
    ]

    def __init__(self, title: str, files: list[tuple[str, Path]]) -> None:
        super().__init__()
        self.title_text = title
        self.files = files

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(self.title_text, markup=False)
            with Horizontal(id="persona-texts"):
                for i, (label, path) in enumerate(self.files):
                    text = path.read_text(encoding="utf-8-sig") if path.is_file() else ""
                    area = TextArea(text, soft_wrap=True, id=f"persona-text-{i}")
                    area.border_title = f"{label} ({path.name})"
                    yield area
            yield Static("ctrl+s: save both   Esc: close", classes="dialog-hint")

    def action_save(self) -> None:
        for i, (_label, path) in enumerate(self.files):
            try:
                atomic_write_text(path, self.query_one(f"#persona-text-{i}", TextArea).text)
            except StorageError as exc:  # read-only, full disk: the texts stay in the dialog
                self.notify(str(exc), title="not saved", severity="error", timeout=15)
                return
        self.notify("saved " + ", ".join(p.name for _, p in self.files))
        self.dismiss(True)

    def action_close(self) -> None:
        self.dismiss(False)


class HelpScreen(ModalScreen[None]):
    """Every key of every screen, built from the bindings themselves so it cannot drift."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,f1,q", "close", "Close")]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        lines: list[str] = []
        for title, keys in self.sections:
            lines.append(f"[b]{title}[/b]")
            lines += [f"  [$accent]{escape(key):<14}[/] {escape(description)}" for key, description in keys]
            lines.append("")
        with VerticalScroll(classes="dialog wide", id="help") as scroll:
            scroll.can_focus = True
            yield Static("\n".join(lines))
        yield Static("↑ ↓ PgUp PgDn: scroll   Esc / F1: close", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
