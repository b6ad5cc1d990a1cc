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
from typing import ClassVar, NamedTuple

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.keys import format_key
from textual.screen import Screen
from textual.widget import Widget

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


class FooterEntry(NamedTuple):
    key: str  # the key pressed when the entry is clicked
    shown: str
    description: str
    enabled: bool


class KeyFooter(Widget, can_focus=False):
    """The footer, help first, the focused part's keys next, never cut mid-label.

    One line drawn by one widget: Textual's Footer mounts a widget per key and recomposes on every
    focus change, which made each tab switch pay for mounting a dozen widgets. This one works out
    its entries when the bindings change and repaints only when they differ.
    """

    DEFAULT_CSS = """
    KeyFooter {
        dock: bottom; height: 1; width: 1fr;
        color: $footer-foreground; background: $footer-background;
        & > .footer-key--key {
            color: $footer-key-foreground; background: $footer-key-background; text-style: bold;
        }
        & > .footer-key--description {
            color: $footer-description-foreground; background: $footer-description-background;
        }
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"footer-key--key", "footer-key--description"}

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[FooterEntry] = []
        self._spans: list[tuple[int, int, FooterEntry]] = []

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._update()

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[object]) -> None:
        if self.is_attached and screen is self.screen:
            self.call_after_refresh(self._update)

    def _update(self) -> None:
        """Work out the entries (after the refresh, when focus and tabs have settled); repaint if new."""
        if not self.is_attached:
            return
        entries = self._entries((self.size.width or self.app.size.width) - 1)
        if entries != self.entries:
            self.entries = entries
            self.refresh()

    def on_resize(self) -> None:
        self._update()

    def _entries(self, room: int) -> list[FooterEntry]:
        """Help first, then the focused part's keys, the screen's, the app's: what fits in ``room``."""
        screen, app = self.screen, self.app
        ranked: list[tuple[int, FooterEntry]] = []
        seen_actions: set[str] = set()
        help_entry: FooterEntry | None = None
        for namespace, binding, enabled, _tooltip in screen.active_bindings.values():
            if binding.action == "help" and namespace is app:
                if help_entry is None or binding.show:
                    key, shown = ("f1", "F1") if takes_text(app.focused) else ("question_mark", "?")
                    help_entry = FooterEntry(key, shown, binding.description, enabled)
                continue
            if not binding.show or binding.action in seen_actions:
                continue
            seen_actions.add(binding.action)
            rank = 2 if namespace is app else 1 if namespace is screen else 0
            shown = binding.key_display or key_label(binding.key, short=True)
            ranked.append((rank, FooterEntry(binding.key, shown, binding.description, enabled)))
        ranked.sort(key=lambda item: item[0])  # stable: declaration order within a rank
        entries: list[FooterEntry] = []
        for entry in [help_entry] if help_entry else []:
            room -= cell_len(entry.shown) + cell_len(entry.description) + 2
            entries.append(entry)
        for _rank, entry in ranked:
            width = cell_len(entry.shown) + cell_len(entry.description) + 2
            if width <= room:  # else a shorter one further on may still fit
                room -= width
                entries.append(entry)
        return entries

    def render(self) -> Text:
        key_style = self.get_component_rich_style("footer-key--key")
        text_style = self.get_component_rich_style("footer-key--description")
        line = Text(no_wrap=True, overflow="crop")
        self._spans = []
        for entry in self.entries:
            start = line.cell_len
            dim = Style(dim=True) if not entry.enabled else Style()
            line.append(entry.shown, key_style + dim)
            line.append(" " + entry.description, text_style + dim)
            self._spans.append((start, line.cell_len, entry))
            line.append(" ")
        return line

    def on_click(self, event: events.Click) -> None:
        for start, end, entry in self._spans:
            if start <= event.x < end:
                if entry.enabled:
                    self.app.simulate_key(entry.key)
                else:
                    self.app.bell()
                return
