"""Pieces shared by the command modules: experiment loading and terminal detection."""

from __future__ import annotations

import argparse
import sys

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.experiment import Experiment, load_experiment


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
