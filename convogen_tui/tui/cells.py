"""Text as wide as the terminal will draw it: one width per character, whatever the terminal.

Rich (and so Textual) measures an emoji sequence as one grapheme: ``👨‍👩‍👧`` (three emoji joined by
ZWJ) as 2 cells, ``❤️`` (a heart and variation selector 16) as 2. Many terminals, tmux among them,
draw the joined family as three emoji (6 cells) and the heart as 1 cell, so every border after such
a character moves. For display, :func:`display_safe` takes out what makes a character's width
depend on its neighbours (joiners, variation selectors, skin-tone modifiers, keycap and tag
marks): every terminal and Rich then agree on the width, character by character. Files and editors
keep the text exactly as it is; only what tables, status lines and read-only views draw changes.
"""

from __future__ import annotations

import re

from rich.cells import cell_len, get_character_cell_size

_JOINERS = re.compile(
    "["
    "\u200d"  # zero width joiner (family and profession emoji)
    "\ufe0e\ufe0f"  # variation selectors 15 (text) and 16 (emoji presentation)
    "\U0001f3fb-\U0001f3ff"  # skin tone modifiers
    "\u20e3"  # combining enclosing keycap
    "\U000e0020-\U000e007f"  # tag characters (subdivision flags)
    "]"
)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def display_safe(text: str) -> str:
    """The text with width-changing joiners and selectors taken out, controls made visible."""
    return _CONTROL.sub("\ufffd", _JOINERS.sub("", text))


def one_line(text: str) -> str:
    """A multi-line text on one line (line breaks shown as ⏎), display-safe."""
    return display_safe(text.replace("\r", "").replace("\n", " ⏎ ").replace("\t", " "))


def width(text: str) -> int:
    """Terminal cells the text takes (after :func:`display_safe`)."""
    return cell_len(text)


def fit(text: str, cells: int) -> str:
    """Cut to at most ``cells`` terminal cells, ending in … when cut; never splits a wide char."""
    if cells <= 0:
        return ""
    if cell_len(text) <= cells:
        return text
    out, used = [], 0
    for char in text:
        size = get_character_cell_size(char)
        if used + size > cells - 1:
            break
        out.append(char)
        used += size
    return "".join(out) + "…"
