"""`convogen check EXPT`: every problem on its own line; exit 0 if the experiment can run."""

from __future__ import annotations

import argparse

from convogen_tui.cli.common import add_experiment_arg, open_experiment
from convogen_tui.core.making.check import CheckReport, check_experiment


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check", help="validate an experiment's setup, templates, seeds and model")
    add_experiment_arg(parser)
    parser.add_argument("--seeds", help="seed file to check instead of the experiment's")
    parser.add_argument("--model", help="model reference to check instead of the setup's llm")
    parser.add_argument(
        "--grammar",
        action="store_true",
        help="print the grammars a constrained run samples under (GBNF, as llama.cpp gets them)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    experiment = open_experiment(args, require_ok=False)
    from convogen_tui.llm.loader import resolve_experiment_model
    from convogen_tui.llm.vocab import open_vocab

    report = check_experiment(experiment, args.seeds, args.model, resolve_experiment_model, open_vocab)
    for problem in report.problems:
        print(problem)
    _print_grammar(report, args.grammar)
    if not report.ok:
        print(f"{experiment.name}: {len(report.errors)} problem(s); fix them, then run check again")
        return 1
    seeds = len(report.seeds.seeds) if report.seeds else 0
    model = report.model_path.name if report.model_path else "?"
    print(f"{experiment.name}: ok ({report.personas} personas, {seeds} seeds, model {model})")
    return 0


def _print_grammar(report: CheckReport, full: bool) -> None:
    setup = report.experiment.setup
    if setup is None:
        return
    if not setup.constrain:
        print('grammar: off ("constrain": false in the setup): the model writes the form freely')
        return
    if report.grammar is None:
        return  # max_tokens cannot hold it: reported as a problem above
    for line in report.grammar.lines():
        print(f"grammar: {line}")
    if full:
        print()
        print(report.grammar.gbnf())
