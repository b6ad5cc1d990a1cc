"""A conversation's text read as a dialog: its messages, and the text around them that is not dialog.

The quality rules, the near-duplicate shingles, the diversity measures and the ShareGPT export all
read a conversation through :func:`parse_dialog`, so they agree on what a message is. Formatting that
models and people use freely is accepted: bold or numbered speaker labels, asides in the label
("SocBot (calmly):"), blank lines between turns, "Turn 3" headers, emoji.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from convogen_tui.core.judging.turns import SPEAKER

SOCBOT, USER = "socbot", "user"

# "Turn 3", "**Turn 3:**", "--- Turn 3 ---": structure, not text
_TURN_HEADER = re.compile(r"^\W*turn\s+\d+\W*$", re.I)
# a line of markdown only: "---", "***", "```", "==="
_RULE_LINE = re.compile(r"^[\s\-=*_`~#>|]*$")
# markup around a label's text: "**User:** text", "*SocBot*: text"
_LEADING_MARKUP = re.compile(r"^[\s*_~`]+")
_MARKUP_START = "*_~`"
# placeholders people and models write for a message with nothing in it
_PLACEHOLDER = re.compile(
    r"^[\[(<*_\s]*(?:no (?:response|reply|answer)|silence|blank|empty|nothing|\.\.\.)[\])>*_\s]*$", re.I
)
# meta text that is never dialog, wherever it appears (also on a label's line)
_META_ALWAYS = re.compile(
    r"\bas an ai\b|\b(?:ai |large )?language model\b"
    r"|\bend of (?:the )?(?:conversation|dialog(?:ue)?|thread)\b",
    re.I,
)
# meta text on a line of its own: "Here is the conversation you asked for:"
_META_ANYWHERE = re.compile(
    _META_ALWAYS.pattern + r"|\bhere(?:'s| is| are)\s+(?:the|a|an|your|my)\s+(?:\w+\s+){0,3}?"
    r"(?:conversation|dialog(?:ue)?|thread|rewrite|version)\b",
    re.I,
)
# a line that is a note, title or heading rather than a message's text
_META_LINE = re.compile(
    r"^\W{0,3}(?:note|notes|disclaimer|title|summary|conversation|dialog(?:ue)?|thread|p\.s\.)\s*[:\-]"
    r"|^\s*[\[(]\s*(?:note|end|disclaimer|the end)\b"
    r"|^\s*#{1,6}\s+\S"
    r"|^\W*the end\W*$",
    re.I,
)
# a closing paragraph after the last message that talks about the text instead of continuing it
_META_PARAGRAPH = re.compile(
    r"^\W*(?:i hope\b|let me know\b|feel free\b|overall\b|in summary\b|in this (?:conversation|dialog)"
    r"|this (?:conversation|dialog(?:ue)?|exchange|thread)\b|the (?:conversation|dialog(?:ue)?|thread)\b"
    r"|(?:socbot|user) and (?:socbot|user)\b)",
    re.I,
)
ECHO_OVERLAP = 0.6  # share of words in common (Jaccard) for a message to be the post repeated
_MARKUP = re.compile(r"[\s*_~`>#\"'“”‘’()\[\]{}]")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)


_T = TypeVar("_T")


class _once(Generic[_T]):
    """A property computed on first use and kept in the instance: ``functools.cached_property``
    without its lock (a listing asks three of these of every message of 100,000 conversations)."""

    def __init__(self, compute: Callable[[Any], _T]) -> None:
        self.compute, self.name = compute, compute.__name__

    def __get__(self, obj: Any, owner: type | None = None) -> _T:
        value = self.compute(obj)
        obj.__dict__[self.name] = value  # found before this descriptor from now on
        return value


@dataclass(frozen=True)
class Message:
    """One message: who speaks, the text without its label and markup, the label's line (1-based)."""

    speaker: str  # "socbot" or "user"
    text: str
    line: int

    @_once
    def empty(self) -> bool:
        """Nothing but markup, or a placeholder such as "[no response]"."""
        text = self.text
        content = text if text[:1].isalnum() else _MARKUP.sub("", text)  # a letter is never markup
        return not content or bool(_PLACEHOLDER.match(self.text.strip()))

    @_once
    def words(self) -> list[str]:
        """:func:`words` of the text, found once: every rule, shingle and measure reads them."""
        return words(self.text)

    @_once
    def emoji(self) -> int:
        return count_emoji(self.text)


@dataclass
class Dialog:
    """The messages of a conversation and whatever around them is not dialog."""

    messages: list[Message] = field(default_factory=list)
    before: str = ""  # text before the first message (titles, "Here is...")
    after: str = ""  # closing paragraphs that comment on the dialog (notes, "I hope this helps")
    meta: list[tuple[int, str]] = field(default_factory=list)  # (line, text) of notes inside it

    @property
    def speakers(self) -> list[str]:
        return [m.speaker for m in self.messages]

    def count(self, speaker: str) -> int:
        return sum(1 for m in self.messages if m.speaker == speaker)

    @property
    def has_dialog(self) -> bool:
        return self.count(SOCBOT) > 0 and self.count(USER) > 0

    @property
    def turns(self) -> int:
        """Complete turns: a SocBot message and the User's reply."""
        return min(self.count(SOCBOT), self.count(USER))

    @property
    def outside(self) -> list[str]:
        """Every piece of text that is not dialog, for explaining a verdict."""
        pieces = [self.before] if self.before else []
        pieces += [text for _, text in self.meta]
        pieces += [self.after] if self.after else []
        return pieces


def parse_dialog(text: str) -> Dialog:
    """Messages by speaker label; text before the first label and closing notes are kept apart."""
    dialog = Dialog()
    before: list[str] = []
    current: tuple[str, int, list[str]] | None = None
    messages: list[tuple[str, int, list[str]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = SPEAKER.match(line)
        if match:
            rest = line[match.end() :]
            if rest[:1].isspace() or rest[:1] in _MARKUP_START:  # most lines: no markup to take off
                rest = _LEADING_MARKUP.sub("", rest)
            current = (match.group(1).lower(), number, [rest])
            messages.append(current)
            if _META_ALWAYS.search(line):
                dialog.meta.append((number, line.strip()))
            continue
        stripped = line.strip()
        if _TURN_HEADER.match(stripped) or (stripped and _RULE_LINE.match(stripped)):
            continue
        if current is None:
            before.append(line)
            continue
        if stripped and (_META_LINE.match(stripped) or _META_ANYWHERE.search(stripped)):
            dialog.meta.append((number, stripped))
            continue
        current[2].append(line)
    dialog.before = "\n".join(before).strip() if any(_WORD.search(b) for b in before) else ""
    if messages:
        speaker, number, lines = messages[-1]
        lines, dialog.after = _split_closing(lines)
        messages[-1] = (speaker, number, lines)
    dialog.messages = [Message(s, _tidy("\n".join(lines)), n) for s, n, lines in messages]
    return dialog


def _split_closing(lines: list[str]) -> tuple[list[str], str]:
    """Separate closing paragraphs that talk about the dialog from the last message's own text."""
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    paragraphs = [p for p in paragraphs if p]
    closing: list[str] = []
    while len(paragraphs) > 1 and _META_PARAGRAPH.match(paragraphs[-1][0]):
        closing.insert(0, "\n".join(paragraphs.pop()))
    if not closing:
        return lines, ""
    kept = [line for p in paragraphs for line in (*p, "")]
    return kept, "\n\n".join(closing)


def _tidy(text: str) -> str:
    """A message's text: surrounding blank lines and unbalanced bold markers removed."""
    text = text.strip()
    if text.endswith("**") and text.count("**") % 2:
        text = text[:-2].rstrip()
    return text


def words(text: str) -> list[str]:
    """Lower-case words (letters and digits, inner apostrophes kept), for diversity and shingles."""
    found = _WORD.findall(text.lower())  # lower() first: one C call instead of one per word
    return [w.replace("’", "'") for w in found] if "’" in text else found


def echoes(message: Message, post: str) -> bool:
    """Whether a message repeats the seed post (the restyle prompt opens with "User: <post>"):
    most of its words are the post's. A User reply that merely comes first is not an echo."""
    said, posted = set(message.words), set(words(post))
    if not said or not posted:
        return False
    return len(said & posted) / len(said | posted) >= ECHO_OVERLAP


def without_echoed_post(messages: list[Message], post: str) -> list[Message]:
    """A twin's messages without a leading User message that only repeats the post."""
    if len(messages) > 1 and messages[0].speaker == USER and echoes(messages[0], post):
        return messages[1:]
    return messages


def dialog_words(text: str) -> list[str]:
    """The words of a conversation's messages, labels and notes left out."""
    return [w for m in parse_dialog(text).messages for w in m.words]


def is_emoji(char: str) -> bool:
    """Pictographs and symbols people use as emoji (not letters, digits or punctuation)."""
    return unicodedata.category(char) == "So" and ord(char) >= 0x2190


def count_emoji(text: str) -> int:
    if text.isascii():  # most messages: no character to look at one by one
        return 0
    return sum(1 for ch in text if ord(ch) >= 0x2190 and is_emoji(ch))
