"""Tables and lists that also move with j and k, as in lazygit, k9s and vim.

The keys are the widgets' own (not the app's), so they only act where a list has focus and never
shadow a letter typed into an editor or a search field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.cells import cell_len
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, OptionList

VIM_KEYS: list[BindingType] = [
    Binding("j", "cursor_down", "Down", show=False),
    Binding("k", "cursor_up", "Up", show=False),
]


class KeyTable(DataTable[str]):
    """A DataTable with j/k."""

    BINDINGS: ClassVar[list[BindingType]] = VIM_KEYS

    def fill(self, labels: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]]) -> None:
        """Replace the rows (``(key, cells)``), the columns sized to their content now.

        DataTable measures new rows when it next idles: a screenshot or a frame drawn before that
        (a busy machine) showed the columns at their labels' widths, ``defau  llam  819``. Fixed
        widths computed here make the first frame the right one.
        """
        widths = [
            max([cell_len(label), *(cell_len(cells[i]) for _, cells in rows)])
            for i, label in enumerate(labels)
        ]
        if [(c.label.plain, c.width) for c in self.ordered_columns] != list(zip(labels, widths, strict=True)):
            self.clear(columns=True)
            for label, width in zip(labels, widths, strict=True):
                self.add_column(label, width=width)
        else:
            self.clear()
        for key, cells in rows:
            self.add_row(*cells, key=key)


def enter_binding(description: str, tooltip: str) -> Binding:
    """Enter on a table, shown in the footer under this name.

    A table's own Enter binding (select the row) shadows any Enter binding of the screen around
    it, so the footer would never show the screen's: tables that act on Enter name it themselves.
    """
    return Binding("enter", "select_cursor", description, tooltip=tooltip)


class KeyList(OptionList):
    """An OptionList with j/k."""

    BINDINGS: ClassVar[list[BindingType]] = VIM_KEYS
