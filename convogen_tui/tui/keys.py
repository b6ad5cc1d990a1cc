"""Keys as people read them, and a footer that always shows the help key at 80 columns.

Textual names keys for code (``left_square_bracket``, ``question_mark``); help and footer show
``[`` and ``?``. The stock footer lists the focused widget's keys first and the app's last, so at
80 columns the help key fell off the right edge. :class:`KeyFooter` puts help first, then the keys
of what has focus, then the screen's, then the app's, and drops what does not fit rather than
cutting a label in half. Over SSH and tmux F-keys are often swallowed, so help is also ``?`` (when
no text field has focus) and the footer says which one works where the focus is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.keys import format_key
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from convogen_tui.tui.widgets.editor import takes_text

NAMES = {
    "escape": "Esc",
    "enter": "Enter",
    "space": "space",
    "tab": "Tab",
    "shift+tab": "shift+Tab",
    "pageup": "PgUp",
    "pagedown": "PgDn",
    "delete": "Del",
    "backspace": "Backspace",
}


def key_label(key: str, short: bool = False) -> str:
    """One key or a comma-separated list (``y,enter``) as a reader writes it (``y/Enter``).

    ``short`` writes ctrl as ``^`` (``^g``), as nano and the footer of most TUIs do.
    """
    labels = []
    for one in key.split(","):
        one = one.strip()
        if one in NAMES:
            labels.append(NAMES[one])
            continue
        *mods, last = one.split("+") if one != "+" else ["+"]
        name = NAMES.get(last) or format_key(last)
        if name == "⏎":
            name = "Enter"
        if len(last) > 1 and last[0] == "f" and last[1:].isdigit():
            name = last.upper()
        if short and "ctrl" in mods:
            mods.remove("ctrl")
            name = "^" + name
        labels.append("+".join([*mods, name]))
    return "/".join(dict.fromkeys(labels))


class HelpSection(NamedTuple):
    """One part of the help screen: a title and (key label, what it does) lines."""

    title: str
    keys: list[tuple[str, str]]


def binding_keys(bindings: Iterable[BindingType]) -> list[tuple[str, str]]:
    """(key label, what it does) for each Binding, for the help screen.

    The footer shows a binding's short description; help shows its tooltip when it has one.
    """
    out = []
    for b in bindings:
        if isinstance(b, Binding):
            out.append((key_label(b.key), b.tooltip or b.description or b.action))
    return out


class KeyFooter(Footer):
    """The footer, help first, the focused part's keys next, never cut mid-label."""

    def __init__(self) -> None:
        super().__init__(compact=True, show_command_palette=False)

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        screen = self.screen
        app = self.app
        ranked: list[tuple[int, Binding, bool, str]] = []
        seen_actions: set[str] = set()
        help_binding: tuple[Binding, bool] | None = None
        for namespace, binding, enabled, tooltip in screen.active_bindings.values():
            if binding.action == "help" and namespace is app:
                if help_binding is None or binding.show:
                    help_binding = (binding, enabled)
                continue
            if not binding.show or binding.action in seen_actions:
                continue
            seen_actions.add(binding.action)
            rank = 2 if namespace is app else 1 if namespace is screen else 0
            ranked.append((rank, binding, enabled, tooltip))
        ranked.sort(key=lambda item: item[0])  # stable: declaration order within a rank
        room = (self.size.width or app.size.width) - 1
        if help_binding is not None:
            binding, enabled = help_binding
            typing = takes_text(app.focused)
            key, shown = ("f1", "F1") if typing else ("question_mark", "?")
            width = cell_len(shown) + 1 + cell_len(binding.description) + 1
            room -= width
            yield FooterKey(key, shown, binding.description, binding.action, disabled=not enabled)
        for _rank, binding, enabled, tooltip in ranked:
            shown = binding.key_display or key_label(binding.key, short=True)
            width = cell_len(shown) + 1 + cell_len(binding.description) + 1
            if width > room:
                continue  # a shorter one further on may still fit
            room -= width
            yield FooterKey(
                binding.key, shown, binding.description, binding.action, disabled=not enabled, tooltip=tooltip
            ).data_bind(compact=Footer.compact)

    def on_resize(self) -> None:
        self.call_after_refresh(self.recompose)
