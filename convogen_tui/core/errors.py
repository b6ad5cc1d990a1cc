"""User-facing errors: each says what is wrong, where, and what to do, so the CLI never shows a traceback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a user's file: where it is, what it is, how to fix it."""

    file: Path | None
    message: str
    key: str | None = None
    line: int | None = None
    hint: str | None = None
    severity: str = "error"  # "error" stops a run; "warning" does not

    def __str__(self) -> str:
        where = str(self.file) if self.file else ""
        if self.line is not None:
            where += f":{self.line}"
        if self.key:
            where += f" [{self.key}]" if where else self.key
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f" ({self.hint})"
        if self.severity != "error":
            text = f"{self.severity}: {text}"
        return text


class ConvogenError(Exception):
    """A mistake the user can fix; carries one or more problems."""

    def __init__(self, message: str | Problem, problems: list[Problem] | None = None) -> None:
        if isinstance(message, Problem):
            problems = [message, *(problems or [])]
            message = str(message)
        self.problems = problems or []
        super().__init__(message)


class ModelError(ConvogenError):
    """The model could not be found, loaded or run."""


class StorageError(ConvogenError, OSError):
    """A file could not be written: full disk, read-only folder, permissions, a vanished folder.

    A run stops on it (every later file would fail too, after spending tokens); the message names
    the folder and what to do. It is an OSError too (with the original errno), so code that
    already handles file errors (``except OSError``) keeps working.
    """

    @classmethod
    def of(cls, exc: OSError, problem: Problem) -> StorageError:
        err = cls(problem)
        err.errno, err.strerror = exc.errno, exc.strerror
        return err

    def __str__(self) -> str:  # the one line, not OSError's "[Errno 28] ..."
        return str(self.args[0]) if self.args else ""


def errors_only(problems: list[Problem]) -> list[Problem]:
    """The problems that stop a run (warnings do not)."""
    return [p for p in problems if p.severity == "error"]


class HasProblems:
    """What collects problems instead of raising them: ok while none of them is an error."""

    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        return errors_only(self.problems)

    @property
    def ok(self) -> bool:
        return not self.errors
