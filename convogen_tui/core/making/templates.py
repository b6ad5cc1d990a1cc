"""Instruction templates: placeholder parsing with line numbers, checking, and rendering.

``conv-gen.txt`` takes three positional ``{}`` (disposition, motivation, tweet, in that order, as the
original notebooks filled them) or the named ``{disposition}``, ``{motivation}``, ``{tweet}``.
``conv-restyle.txt`` takes one ``{}`` (``User: <tweet>`` then the conversation) or ``{conv}`` with an
optional ``{tweet}``. ``judge.txt`` (the judge pass) names its slots: ``{conv}`` and ``{criteria}``,
optionally ``{tweet}``, ``{motivation}``, ``{disposition}``, ``{restyled}`` and ``{scale}``.
``{{`` and ``}}`` write literal braces.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from convogen_tui.core.errors import ConvogenError, Problem

TemplateKind = Literal["conv-gen", "conv-restyle", "judge"]

GEN_FIELDS = ("disposition", "motivation", "tweet")
RESTYLE_FIELDS = ("tweet", "conv")
JUDGE_FIELDS = ("tweet", "motivation", "disposition", "conv", "restyled", "criteria", "scale")
_FIELDS = {"conv-gen": GEN_FIELDS, "conv-restyle": RESTYLE_FIELDS, "judge": JUDGE_FIELDS}
_REQUIRED = {"conv-gen": set(GEN_FIELDS), "conv-restyle": {"conv"}, "judge": {"conv", "criteria"}}
_POSITIONAL = {"conv-gen": 3, "conv-restyle": 1, "judge": 0}  # a judge template names its slots


@dataclass(frozen=True)
class Slot:
    name: str  # "" for a positional {}
    line: int
    column: int


@dataclass(frozen=True)
class Template:
    """A parsed template: literal pieces and the slots between them."""

    kind: TemplateKind
    text: str
    pieces: tuple[str, ...]  # len(pieces) == len(slots) + 1
    slots: tuple[Slot, ...]
    path: Path | None = None

    @property
    def positional(self) -> bool:
        return bool(self.slots) and self.slots[0].name == ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def static_prefix(self) -> str:
        """The text before the first slot: the same for every job, so its KV cache can be shared."""
        return self.pieces[0]

    def render(self, **values: str) -> str:
        """Fill the slots; positional slots take the fields in the original order."""
        if self.kind == "conv-restyle" and self.positional:
            fill = [f"User: {values['tweet']}\n\n{values['conv']}"]
        elif self.positional:
            fill = [values[name] for name in GEN_FIELDS]
        else:
            fill = [values[slot.name] for slot in self.slots]
        out = [self.pieces[0]]
        for value, piece in zip(fill, self.pieces[1:], strict=True):
            out += [value, piece]
        return "".join(out)


def parse_template(text: str, kind: TemplateKind, path: Path | None = None) -> Template:
    """Parse and check a template; raise ConvogenError listing every problem."""
    template, problems = _parse(text, kind, path)
    if problems or template is None:
        raise ConvogenError(problems[0], problems[1:])
    return template


def check_template(text: str, kind: TemplateKind, path: Path | None = None) -> list[Problem]:
    """Every problem in a template, for live checking as the user types."""
    return _parse(text, kind, path)[1]


def load_template(path: Path, kind: TemplateKind) -> Template:
    if not path.is_file():
        raise ConvogenError(
            Problem(path, "template file not found", hint=f"create {path.name} in the experiment")
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConvogenError(Problem(path, f"not UTF-8 text ({exc.reason})")) from None
    return parse_template(text, kind, path)


def _parse(text: str, kind: TemplateKind, path: Path | None) -> tuple[Template | None, list[Problem]]:
    problems: list[Problem] = []
    pieces: list[str] = []
    slots: list[Slot] = []
    literal: list[str] = []
    line, line_start, i, n = 1, 0, 0, len(text)
    expected = _expected(kind)

    def problem(message: str, at_line: int, hint: str | None = None) -> None:
        problems.append(Problem(path, message, line=at_line, hint=hint, key=kind))

    while i < n:
        char = text[i]
        if char == "\n":
            line, line_start = line + 1, i + 1
        if char == "{":
            if text.startswith("{{", i):
                literal.append("{")
                i += 2
                continue
            end = text.find("}", i + 1)
            inner = text[i + 1 : end] if end != -1 else ""
            column = i - line_start + 1
            if end == -1 or "{" in inner or "\n" in inner:
                problem(
                    f"unmatched '{{' at column {column}",
                    line,
                    "close the placeholder, or write '{{' for a literal brace",
                )
                literal.append("{")
                i += 1
                continue
            name = inner.strip()
            allowed = _FIELDS[kind]
            if name and name not in allowed:
                problem(
                    f"unknown placeholder {{{inner}}} at column {column}",
                    line,
                    f"use {expected}, or write {{{{{inner}}}}} for literal braces",
                )
            pieces.append("".join(literal))
            literal = []
            slots.append(Slot(name, line, column))
            i = end + 1
            continue
        if char == "}":
            if text.startswith("}}", i):
                literal.append("}")
                i += 2
                continue
            problem(
                f"unmatched '}}' at column {i - line_start + 1}",
                line,
                "write '}}' for a literal brace",
            )
        literal.append(char)
        i += 1
    pieces.append("".join(literal))

    _check_slots(kind, slots, line, problem)
    if not problems:
        return Template(kind, text, tuple(pieces), tuple(slots), path), []
    return None, problems


def _check_slots(
    kind: TemplateKind, slots: list[Slot], last_line: int, problem: Callable[[str, int, str | None], None]
) -> None:
    """The placeholders a template of this kind must have: all positional or all named, the count
    or the required names."""
    expected = _expected(kind)
    names = {s.name for s in slots}
    if "" in names and len(names) > 1:
        first_named = next(s for s in slots if s.name)
        problem("mixes positional {} and named placeholders", first_named.line, f"use only {expected}")
    elif names == {""}:
        want = _POSITIONAL[kind]
        if not want:
            problem("takes named placeholders only, not {}", slots[0].line, f"use {expected}")
        elif len(slots) != want:
            what = (
                "three: disposition, motivation, tweet, in that order"
                if kind == "conv-gen"
                else "one: the tweet and conversation"
            )
            problem(f"has {len(slots)} '{{}}' slots; it needs {what}", slots[-1].line, None)
    else:
        for missing in sorted(_REQUIRED[kind] - names):
            problem(
                f"missing placeholder {{{missing}}}",
                last_line if not slots else slots[-1].line,
                f"a {kind} template needs {expected}",
            )


def _expected(kind: TemplateKind) -> str:
    if kind == "judge":
        return "{conv} and {criteria}, optionally {tweet}, {motivation}, {disposition}, {restyled}, {scale}"
    if kind == "conv-gen":
        return "{disposition}, {motivation} and {tweet} (or three {})"
    return "{conv} and optionally {tweet} (or one {})"
