"""`convogen tui [EXPT]` (and plain `convogen`): open the Textual app."""

from __future__ import annotations

import argparse

from convogen_tui.cli.common import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tui", help="open the app (the default with no command)")
    parser.add_argument("experiment", nargs="?", metavar="EXPT", help="open straight into this experiment")
    parser.add_argument("--model", help="model reference for runs started in the app")
    parser.add_argument(
        "--max-tokens", type=positive_int, default=None, help="new tokens per pass (default from the setup)"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="fixed random seed: the same text on CPU every run"
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help='llama.cpp CPU threads (default: the setup\'s "threads", else half the CPUs, at most 8)',
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from convogen_tui.tui.app import run_app

    return run_app(
        root=args.root,
        experiment=getattr(args, "experiment", None),
        model=args.model,
        max_tokens=args.max_tokens,
        seed=args.seed,
        threads=args.threads,
    )
