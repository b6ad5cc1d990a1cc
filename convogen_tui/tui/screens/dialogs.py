"""Small modal dialogs: ask for a name or a number, choose among keyed answers, compare a file
with the disk, edit persona texts, help."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Input, Static, TextArea

from convogen_tui.tui.editing import EditedFile, KeepsEdits
from convogen_tui.tui.keys import HelpSection
from convogen_tui.tui.screens.choice import ChoiceDialog, DiffDialog
from convogen_tui.tui.widgets.editor import Editor

__all__ = ["AskDialog", "ChoiceDialog", "ConfirmDialog", "DiffDialog", "HelpScreen", "HydrateDialog"]


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
            yield Static(self.question, markup=False)
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
            yield Static(self.question, markup=False)
            yield Static("y / Enter: yes   n / Esc: no", classes="dialog-hint")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PersonaDialog(KeepsEdits, ModalScreen[bool]):
    """The motivation and disposition texts of one persona, side by side; ctrl+s saves both files.

    Esc with unsaved edits asks first; the texts follow the disk like every other editor.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save"),
        Binding("escape", "close", "Close", priority=True),  # over the editors' own Esc (leave)
    ]

    def __init__(self, title: str, files: list[tuple[str, Path]]) -> None:
        super().__init__()
        self.title_text = title
        self.files = [EditedFile(path, path.name) for _label, path in files]
        self.labels = [label for label, _path in files]
        self.changed = False

    def edited_files(self) -> list[EditedFile]:
        return self.files

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static(self.title_text, markup=False)
            with Horizontal(id="persona-texts"):
                for i, edited in enumerate(self.files):
                    area = edited.bind(Editor(edited.read(), soft_wrap=True, id=f"persona-text-{i}"))
                    area.border_title = f"{self.labels[i]} ({edited.label})"
                    yield area
            yield Static("ctrl+s: save both   Esc: close   Tab: the other text", classes="dialog-hint")

    def on_mount(self) -> None:
        self.set_interval(1.0, self.poll_disk)

    def poll_disk(self) -> None:
        for edited in self.files:
            said = edited.poll()
            if said:
                self.notify(said, severity="warning" if "unsaved" in said else "information")

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        for i, edited in enumerate(self.files):
            if edited.area is event.text_area:
                event.text_area.border_title = f"{self.labels[i]} ({edited.title()})"

    def after_save(self, changed: list[EditedFile]) -> None:
        self.changed = True

    def action_save(self) -> None:
        if not self.unsaved():
            self.dismiss(self.changed)
            return
        self.save_unsaved(lambda: self.dismiss(True))

    def action_close(self) -> None:
        unsaved = self.unsaved()
        if not unsaved:
            self.dismiss(self.changed)
            return

        def answered(choice: str | None) -> None:
            if choice == "save":
                self.save_unsaved(lambda: self.dismiss(True))
            elif choice == "discard":
                self.dismiss(self.changed)

        self.app.push_screen(
            ChoiceDialog(
                f"Unsaved edits in {', '.join(unsaved)}.",
                [("s", "save", "save, then close"), ("d", "discard", "discard the edits and close")],
                cancel="cancel: back to editing",
            ),
            answered,
        )


class HelpScreen(ModalScreen[None]):
    """Every key of every screen, built from the bindings themselves so it cannot drift; it opens
    at the section of the screen (and tab) it was asked from."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1,q,question_mark", "close", "Close"),
        Binding("j", "scroll(1)", "Down", show=False),
        Binding("k", "scroll(-1)", "Up", show=False),
    ]

    def __init__(self, sections: list[HelpSection], start: str | None = None) -> None:
        super().__init__()
        self.sections = sections
        self.start = start

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog wide", id="help") as scroll:
            scroll.can_focus = True
            for title, keys in self.sections:
                mark = "  [$accent]◀ here[/]" if title == self.start else ""
                lines = [f"[b]{escape(title)}[/b]{mark}"]
                lines += [f"  [$accent]{escape(key):<14}[/] {escape(what)}" for key, what in keys]
                yield Static("\n".join(lines) + "\n", classes="help-section")
        yield Static("↑ ↓ j k PgUp PgDn: scroll   Esc / ? / F1: close", classes="dialog-hint")

    def start_section(self) -> Static | None:
        """The section of the screen help was asked from."""
        titles = [title for title, _keys in self.sections]
        if self.start not in titles:
            return None
        return list(self.query(".help-section").results(Static))[titles.index(self.start)]

    def on_mount(self) -> None:
        scroll = self.query_one("#help", VerticalScroll)
        scroll.focus()
        section = self.start_section()
        if section is not None:
            self.call_after_refresh(scroll.scroll_to_widget, section, animate=False, top=True, immediate=True)

    def action_scroll(self, lines: int) -> None:
        self.query_one("#help", VerticalScroll).scroll_relative(y=lines, animate=False)

    def action_close(self) -> None:
        self.dismiss(None)
