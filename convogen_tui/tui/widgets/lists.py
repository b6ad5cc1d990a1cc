"""Tables and lists that also move with j and k, as in lazygit, k9s and vim.

The keys are the widgets' own (not the app's), so they only act where a list has focus and never
shadow a letter typed into an editor or a search field.
"""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import DataTable, OptionList

VIM_KEYS: list[BindingType] = [
    Binding("j", "cursor_down", "Down", show=False),
    Binding("k", "cursor_up", "Up", show=False),
]


class KeyTable(DataTable[str]):
    """A DataTable with j/k."""

    BINDINGS: ClassVar[list[BindingType]] = VIM_KEYS


def enter_binding(description: str, tooltip: str) -> Binding:
    """Enter on a table, shown in the footer under this name.

    A table's own Enter binding (select the row) shadows any Enter binding of the screen around
    it, so the footer would never show the screen's: tables that act on Enter name it themselves.
    """
    return Binding("enter", "select_cursor", description, tooltip=tooltip)


class KeyList(OptionList):
    """An OptionList with j/k."""

    BINDINGS: ClassVar[list[BindingType]] = VIM_KEYS
