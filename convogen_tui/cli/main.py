"""`convogen`: parse arguments, dispatch to a command module, turn user mistakes into one line.

Each command module exposes ``register(subparsers)`` and sets ``func`` on its parser; the function
takes the parsed namespace and returns an exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from convogen_tui import __version__
from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.keeping.redact import RedactingStream

# Command modules under convogen_tui.cli, registered in this order.
COMMAND_MODULES = ["tui", "check", "generate", "judge", "browse", "dataset", "versions", "models", "seeds"]


def default_root() -> Path:
    return Path(os.environ.get("CONVOGEN_ROOT", "datasets"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convogen",
        description="Generate synthetic SocBot/User conversations from seed messages with a local "
        "llama.cpp model. With no command, opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"convogen {__version__}")
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="datasets folder holding inst-templates/ (default ./datasets or $CONVOGEN_ROOT)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"convogen_tui.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"convogen_tui.cli.{name}":
                raise
            continue
        module.register(subparsers)
    _add_common_options(subparsers)
    return parser


def _add_common_options(subparsers: argparse._SubParsersAction) -> None:
    """Accept --root and --debug after the command too (`convogen generate X --root R`)."""
    for sub in subparsers.choices.values():
        sub.add_argument("--root", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_common_options(action)


INTERRUPT_GRACE_S = 3.0  # after Ctrl-C, how long the command's leftover threads get to end


def run() -> NoReturn:
    """The process's entry (the ``convogen`` script, ``python -m convogen_tui``): :func:`main`,
    then an exit that an interrupted run's leftover threads cannot hold up."""
    code = main()
    if code == 130:
        _exit_after_interrupt(code)
    raise SystemExit(code)


def _exit_after_interrupt(code: int) -> None:
    """Ctrl-C: the command has cleaned up (no partial file, the lock released). A worker thread
    still blocked on a server that holds its answer would keep the process alive until the read
    timeout; after a short grace the process exits without it."""
    deadline = time.monotonic() + INTERRUPT_GRACE_S
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    for thread in others:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in others):
        print("convogen: a request still waits on the server; exiting without it", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.root is None:
        args.root = default_root()
    if args.command is None:
        if "tui" not in parser._subparsers._group_actions[0].choices:  # type: ignore[union-attr]
            parser.print_help()
            return 0
        args = parser.parse_args([*(argv or sys.argv[1:]), "tui"])
        if args.root is None:
            args.root = default_root()
    with redacted_output():
        try:
            return int(args.func(args) or 0)
        except ConvogenError as exc:
            if args.debug:
                raise
            print(f"convogen: {exc}", file=sys.stderr)
            for problem in exc.problems[1:]:
                print(f"convogen: {problem}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("convogen: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            return 0
        except OSError as exc:  # a file-system fault nobody expected: still one line, no traceback
            if args.debug:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"convogen: {where}{exc.strerror or exc} (run with --debug for details)", file=sys.stderr)
            return 1


@contextlib.contextmanager
def redacted_output() -> Iterator[None]:
    """Everything the command prints goes through the one redaction step (core.redact)."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(out), RedactingStream(err)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
