"""Line numbers for keys in a JSON document, so validation errors can point at a line."""

from __future__ import annotations

import contextlib
import json
import re

_WS = re.compile(r"[ \t\r\n]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_SCALAR = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null")


def key_path(loc: tuple[object, ...]) -> str:
    """Render a pydantic location like ('user_profiles', 0, 'path') as user_profiles[0].path."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def key_lines(text: str) -> dict[str, int]:
    """Map every key path in a JSON text to the 1-based line where its value starts.

    Returns what it could read; a malformed document yields a partial map, never an error.
    """
    lines: dict[str, int] = {}
    with contextlib.suppress(ValueError, IndexError):
        _value(text, _skip(text, 0), "", lines)
    return lines


def _skip(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    return match.end() if match else pos


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _value(text: str, pos: int, path: str, lines: dict[str, int]) -> int:
    if path:
        lines.setdefault(path, _line(text, pos))
    char = text[pos]
    if char == "{":
        pos = _skip(text, pos + 1)
        if text[pos] == "}":
            return pos + 1
        while True:
            match = _STRING.match(text, pos)
            if not match:
                raise ValueError("expected key")
            key = json.loads(match.group(0))
            key_line = _line(text, pos)
            pos = _skip(text, match.end())
            if text[pos] != ":":
                raise ValueError("expected colon")
            child = f"{path}.{key}" if path else key
            lines.setdefault(child, key_line)
            pos = _value(text, _skip(text, pos + 1), child, lines)
            pos = _skip(text, pos)
            if text[pos] == ",":
                pos = _skip(text, pos + 1)
                continue
            if text[pos] == "}":
                return pos + 1
            raise ValueError("expected , or }")
    if char == "[":
        pos = _skip(text, pos + 1)
        if text[pos] == "]":
            return pos + 1
        index = 0
        while True:
            pos = _value(text, pos, f"{path}[{index}]", lines)
            pos = _skip(text, pos)
            index += 1
            if text[pos] == ",":
                pos = _skip(text, pos + 1)
                continue
            if text[pos] == "]":
                return pos + 1
            raise ValueError("expected , or ]")
    match = _STRING.match(text, pos) or _SCALAR.match(text, pos)
    if not match:
        raise ValueError("bad value")
    return match.end()
