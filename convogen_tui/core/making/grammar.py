"""Grammars derived from the setup, so a constrained model cannot get the form of a dialog wrong.

The dialog grammar (generation): SocBot first, then strictly alternating ``SocBot: ...`` /
``User: ...`` lines, exactly the turn target the quality rules use (``quality.turns``, else the
number in conv-gen.txt, else 8), nothing before the first line or after the last, no empty message.
The restyle grammar: the speakers of the saved conversation in the same order and number (an
optional leading ``User: <post>`` line first, as the restyle prompt shows it), each message at most
the rule's ``max_message_chars`` (280 unless the template or the setup says otherwise), messages
separated as the conversation separates them. The model stays free only where it should be: the words.

The cap on characters per message makes the whole dialog fit ``max_tokens`` (a dialog cut off is a
form defect too). It assumes at least :data:`CHARS_PER_TOKEN` characters per token, half of what
English text takes in the BPE vocabularies of Llama, Mistral or SmolLM (about 4); a message of emoji
or non-Latin script can cost more tokens per character: the local engine then lets a constrained
pass run up to half as much again past max_tokens (llm/llama_engine.py) rather than cut it.
Templates stay the user's: nothing here is written by hand per experiment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.judging.dialog import SOCBOT, parse_dialog
from convogen_tui.core.judging.quality import ResolvedQuality, turn_mentions
from convogen_tui.core.making.backend import Constraint

CHARS_PER_TOKEN = 2.0  # conservative: English BPE text is about 4 characters a token
LABEL_TOKENS = 5  # "SocBot: " or "User: " and the line break before the next message, at most
END_TOKENS = 2  # the end-of-generation token, and one to spare
MIN_MESSAGE_CHARS = 20  # below this a constrained dialog is not worth its tokens: an error
LABELS = {SOCBOT: "SocBot", "user": "User"}

# the first character of a message: one that the empty-message rule does not strip (no markup,
# quote, bracket or punctuation), so a message can never read as empty
_FIRST = r"[^\n\r\t *_~`>#\"'“”‘’()\[\]{}.,;:!?\-]"
_MIDDLE = r"[^\n\r]"
# the last character: not a space, comma or dash (a message that ends there reads as cut off)
_LAST = r"[^\n\r\t ,;:\-–—]"


@dataclass(frozen=True)
class DialogShape:
    """What a grammar allows: the messages' speakers in order, their length, the separators."""

    speakers: tuple[str, ...]  # "socbot" / "user" per message
    max_chars: int
    separator: str = "\n"
    post: bool = False  # an optional leading "User: <post>" line, then a blank line
    name: str = "dialog"

    @property
    def turns(self) -> int:
        return min(self.speakers.count(SOCBOT), len(self.speakers) - self.speakers.count(SOCBOT))

    def summary(self) -> str:
        """One line for check, the Templates screen and the run's status."""
        first = LABELS[self.speakers[0]] if self.speakers else "?"
        if self.name == "dialog":
            return f"constrained: {self.turns} turns, {first} first, <= {self.max_chars} chars a message"
        post = ", an optional leading post" if self.post else ""
        return (
            f"restyle constrained: the conversation's {len(self.speakers)} messages in order{post}, "
            f"<= {self.max_chars} chars a message"
        )

    def short(self) -> str:
        """The summary in a few words, for the Templates screen's narrow column."""
        what = f"{self.turns} turns" if self.name == "dialog" else "same speakers"
        return f"grammar: {what} · ≤{self.max_chars} chars/message"

    def gbnf(self) -> str:
        return _gbnf(self)

    def constraint(self) -> Constraint:
        return Constraint(self.name, self.gbnf())


def message_cap(max_tokens: int, n_messages: int) -> int:
    """Characters a message may have so ``n_messages`` of them fit ``max_tokens`` (see the header)."""
    per_message = (max_tokens - END_TOKENS) // max(1, n_messages) - LABEL_TOKENS
    return int(per_message * CHARS_PER_TOKEN)


def _too_small(what: str, cap: int, max_tokens: int, n_messages: int) -> ConvogenError:
    need = (int(MIN_MESSAGE_CHARS / CHARS_PER_TOKEN) + LABEL_TOKENS) * n_messages + END_TOKENS
    return ConvogenError(
        Problem(
            None,
            f"max_tokens {max_tokens} leaves {max(cap, 0)} characters a message for the {n_messages} "
            f"messages of a constrained {what}",
            key="sampling.max_tokens",
            hint=f"raise max_tokens to at least {need}, lower the turns, or run with --no-constrain",
        )
    )


def dialog_shape(quality: ResolvedQuality, max_tokens: int) -> DialogShape:
    """The generation grammar's shape: ``quality.turns`` turns, SocBot first, capped to fit."""
    speakers = (SOCBOT, "user") * quality.turns
    cap = message_cap(max_tokens, len(speakers))
    if cap < MIN_MESSAGE_CHARS:
        raise _too_small("dialog", cap, max_tokens, len(speakers))
    return DialogShape(speakers, cap)


def restyle_shape(conv: str, quality: ResolvedQuality, max_tokens: int) -> DialogShape | None:
    """The restyle grammar's shape for a saved conversation; None when it has no dialog to keep."""
    dialog = parse_dialog(conv)
    if not dialog.has_dialog:
        return None
    speakers = tuple(dialog.speakers)
    cap = min(quality.max_message_chars, message_cap(max_tokens, len(speakers) + 1))  # + the post
    if cap < MIN_MESSAGE_CHARS:
        raise _too_small("restyle", cap, max_tokens, len(speakers) + 1)
    separator = "\n\n" if re.search(r"\n[ \t]*\n", conv.strip()) else "\n"
    return DialogShape(speakers, cap, separator, post=True, name="restyle")


def dialog_constraint(quality: ResolvedQuality, max_tokens: int) -> Constraint:
    return dialog_shape(quality, max_tokens).constraint()


def restyle_constraint(conv: str, quality: ResolvedQuality, max_tokens: int) -> Constraint | None:
    shape = restyle_shape(conv, quality, max_tokens)
    return shape.constraint() if shape is not None else None


@dataclass(frozen=True)
class GrammarInForce:
    """What ``check`` and the Templates screen show: the grammars a run of this setup uses."""

    dialog: DialogShape
    restyle: DialogShape  # for a conversation of the target's shape (each restyle follows its own)

    def lines(self) -> list[str]:
        return [self.dialog.summary(), self.restyle.summary()]

    def gbnf(self) -> str:
        """Both grammars in full, as llama.cpp receives them."""
        restyle = "# (restyle: for a conversation of the target's shape; each follows its own)\n"
        return self.dialog.gbnf() + "\n" + restyle + self.restyle.gbnf()


def grammar_in_force(quality: ResolvedQuality, max_tokens: int) -> GrammarInForce:
    """The grammars of a setup; ConvogenError when max_tokens cannot hold them."""
    dialog = dialog_shape(quality, max_tokens)
    restyle = restyle_shape("\n".join(f"{LABELS[s]}: x" for s in dialog.speakers), quality, max_tokens)
    assert restyle is not None  # the target's shape always has a dialog
    return GrammarInForce(dialog, restyle)


def turn_disagreements(template_path: Path, text: str, quality: ResolvedQuality) -> list[Problem]:
    """Warnings for each "N turns" in conv-gen.txt that is not the turn target the grammar makes."""
    return [
        Problem(
            template_path,
            f'the template asks for "{words}" but the turn target is {quality.turns}: a constrained '
            f"run writes {quality.turns} turns and the quality rules count {quality.turns}",
            line=line,
            hint='make them agree: edit the template, or "quality": {"turns": N} in expt-setup.json',
            severity="warning",
        )
        for line, number, words in turn_mentions(text)
        if number != quality.turns
    ]


def _gbnf(shape: DialogShape) -> str:
    """The llama.cpp grammar (GBNF) of a shape, commented so a user can read what it allows."""
    n = len(shape.speakers)
    sep = _literal(shape.separator)
    header = [
        f"# ConvoGen {shape.name} grammar: {n} messages, "
        + ", ".join(LABELS[s] for s in shape.speakers[:4])
        + (", ..." if n > 4 else ""),
        f"# each message 1 to {shape.max_chars} characters on one line; nothing before or after",
    ]
    if shape.name == "dialog" and n >= 4 and shape.speakers == (SOCBOT, "user") * (n // 2):
        turns = n // 2
        body = f"(socbot {sep} user {sep}){{{turns - 1}}} socbot {sep} user"
    else:
        body = f" {sep} ".join("socbot" if s == SOCBOT else "user" for s in shape.speakers)
    rules = []
    if shape.post:
        rules.append(f"root ::= post? {body}")
        rules.append(f'post ::= "User: " text {_literal(chr(10) * 2)}')
    else:
        rules.append(f"root ::= {body}")
    rules += [
        'socbot ::= "SocBot: " text',
        'user ::= "User: " text',
        _text_rule(shape.max_chars),
        f"first ::= {_FIRST}",
        f"middle ::= {_MIDDLE}",
        f"last ::= {_LAST}",
    ]
    return "\n".join(header + rules) + "\n"


def _text_rule(max_chars: int) -> str:
    if max_chars <= 1:
        return "text ::= first"
    if max_chars == 2:
        return "text ::= first last?"
    return f"text ::= first (middle{{0,{max_chars - 2}}} last)?"


def _literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
