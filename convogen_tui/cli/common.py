"""Pieces shared by the command modules: experiment loading and terminal detection."""

from __future__ import annotations

import argparse
import sys

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.making.experiment import Experiment, load_experiment


def add_experiment_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "experiment", metavar="EXPT", help="experiment folder, or its name under ROOT/inst-templates"
    )


def open_experiment(args: argparse.Namespace, require_ok: bool = True) -> Experiment:
    experiment = load_experiment(args.experiment, args.root)
    if require_ok and experiment.errors:
        first, *rest = experiment.errors
        raise ConvogenError(first, rest)
    return experiment


def is_tty() -> bool:
    return sys.stdout.isatty()


def err(message: str) -> None:
    print(message, file=sys.stderr)


def _int_at_least(minimum: int, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {minimum} or more, not {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (a count of tokens, jobs, streams)."""
    return _int_at_least(1, text)


def non_negative_int(text: str) -> int:
    """argparse type: a whole number of at least 0 (retries)."""
    return _int_at_least(0, text)


def positive_float(text: str) -> float:
    """argparse type: a number above 0 (seconds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def temperature(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0 <= value <= 5:
        raise argparse.ArgumentTypeError(f"must be between 0 and 5, not {value}")
    return value


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    """--threads, the same for every command that runs llama.cpp (generate, restyle, the app)."""
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help='llama.cpp CPU threads (default: the setup\'s "threads", else half the CPUs, at most 8)',
    )
