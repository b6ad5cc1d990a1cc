"""`convogen judge`: score restyled pairs with a judge model, or compare the judge with the reviewer.

The judge pass runs through the same machinery as generate (run lock, resume, progress, Ctrl-C,
provenance): its jobs are the planner's "judge" kind. ``--calibration`` reads the judgments and the
reviewer's marks and says how well the judge's scores separate kept from flagged conversations.
"""

from __future__ import annotations

import argparse
import json

from convogen_tui.cli.common import add_experiment_arg, open_experiment, positive_int
from convogen_tui.cli.generate import _backend_args, _lock, _lock_args, _prepare, parallel_count, run_judged
from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.judging.calibration import calibrate, describe_calibration
from convogen_tui.core.judging.judge import load_judge
from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.core.making.experiment import Experiment


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "judge", help="score restyled pairs on the setup's judge criteria (or --calibration)"
    )
    add_experiment_arg(parser)
    parser.add_argument("--again", action="store_true", help="judge again pairs that have a judgment")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N", help="judge at most N pairs")
    parser.add_argument(
        "--parallel", type=parallel_count, default=None, metavar="auto|N", help="pairs judged together"
    )
    parser.add_argument(
        "--judge-model",
        default=None,
        metavar="REF",
        help='judge model (default: the setup\'s "judge": {"model"}, else the generator\'s)',
    )
    parser.add_argument("--n-gpu-layers", type=int, default=None, help="layers to offload (-1 all)")
    parser.add_argument(
        "--threads", type=positive_int, default=None, metavar="N", help="llama.cpp CPU threads"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="random seed (the judge samples at temperature 0)"
    )
    parser.add_argument(
        "--calibration",
        action="store_true",
        help="compare the judge's scores with the reviewer's kept/flagged marks (no model needed)",
    )
    parser.add_argument("--json", action="store_true", help="with --calibration: print JSON")
    _backend_args(parser)
    _lock_args(parser)
    parser.set_defaults(func=run_judge, model=None, max_tokens=None, temperature=None, constrain=None)


def run_judge(args: argparse.Namespace) -> int:
    experiment = open_experiment(args)
    if args.json and not args.calibration:
        raise ConvogenError(Problem(None, "--json goes with --calibration"))
    if args.calibration:
        return print_calibration(experiment, args.json)
    load_judge(experiment)  # no criteria or a broken judge.txt: said before any model loads
    with _lock(args, experiment):
        _prepare(experiment)
        return run_judged(args, experiment)


def print_calibration(experiment: Experiment, as_json: bool) -> int:
    """The judge against the reviewer's marks: per criterion and for the mean score."""
    from convogen_tui.core.judging.judge import judge_settings

    settings = judge_settings(experiment)
    store = ConversationStore(experiment.dir)
    report = calibrate(store.list(), store.judgments(), settings.names)
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(describe_calibration(report))
    return 0
