"""The one redaction step: secrets never reach a terminal, a notification, a log line or a file.

Every message the CLI prints (its stdout and stderr go through :class:`RedactingStream`), every
notification the app shows, every log record (:class:`RedactingFilter`) and every file written by
``core.files`` passes through :func:`redact`. It removes the values of the secrets ConvoGen reads
from the environment (the inference servers' API key, the X bearer token, the Hugging Face token),
any secret registered at run time (a key passed in code, a token from the hub's login file), and
whatever follows ``Bearer`` in an echoed Authorization header, wherever they appear: a server that
echoes the request headers in an error body cannot make ConvoGen show the key.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from typing import Any, TextIO
from urllib.parse import quote

#: environment variables whose values are secrets (API key, X bearer token, Hugging Face token)
SECRET_ENV_VARS = (
    "CONVOGEN_API_KEY",
    "OPENAI_API_KEY",
    "X_BEARER_TOKEN",
    "TWITTER_BEARER_TOKEN",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
)
MIN_SECRET_LENGTH = 4  # shorter values are no secret, and replacing them would garble every text
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_BEARER_WORD = re.compile(r"(?i)bearer")

_registered: dict[str, str] = {}
_lock = threading.Lock()


def register_secret(value: str | None, name: str = "secret") -> None:
    """Redact ``value`` from now on (a key given in code, a token read from a login file)."""
    if value and len(value.strip()) >= MIN_SECRET_LENGTH:
        with _lock:
            _registered[value.strip()] = name


def secrets() -> dict[str, str]:
    """Every secret value known now, mapped to the name that replaces it; longest first."""
    found = dict(_registered)
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name, "").strip()
        if len(value) >= MIN_SECRET_LENGTH:
            found.setdefault(value, name)
    return dict(sorted(found.items(), key=lambda item: -len(item[0])))


def redact(text: str) -> str:
    """``text`` with every known secret replaced by ``[NAME redacted]``."""
    if not text:
        return text
    known = secrets()
    if not known and not _BEARER_WORD.search(text):  # most texts: nothing to look for, one scan
        return text
    for value, name in known.items():
        mask = f"[{name} redacted]"
        text = text.replace(value, mask)
        quoted = quote(value, safe="")
        if quoted != value:
            text = text.replace(quoted, mask)
    return _BEARER.sub(r"\1[redacted]", text)


def redactor() -> Callable[[str], str]:
    """:func:`redact` for many texts written in one go (an export's rows): the secrets are read
    once, and with none set only a text that mentions a bearer token is looked at."""
    if secrets():
        return redact
    return lambda text: redact(text) if _BEARER_WORD.search(text) else text


class RedactingStream:
    """A text stream that redacts what is written to it (the CLI's stdout and stderr)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, flush, encoding...
        return getattr(self._stream, name)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message (tweepy logs request headers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
