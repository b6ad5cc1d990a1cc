"""`convogen tui [EXPT]` (and plain `convogen`): open the Textual app."""

from __future__ import annotations

import argparse

from convogen_tui.cli.common import add_threads_arg, positive_int


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
    add_threads_arg(parser)
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
