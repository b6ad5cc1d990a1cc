"""`convogen judge`: score restyled pairs with a judge model, or compare the judge with the reviewer.

The judge pass runs through the same machinery as generate (run lock, resume, progress, Ctrl-C,
provenance): its jobs are the planner's "judge" kind. ``--calibration`` reads the judgments and the
reviewer's marks and says how well the judge's scores separate kept from flagged conversations.
"""

from __future__ import annotations

import argparse
import json

from convogen_tui.cli.common import add_experiment_arg, err, open_experiment, positive_int
from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.judging.calibration import calibrate, describe_calibration
from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.core.making.experiment import Experiment
from convogen_tui.core.making.pipeline import JudgePlan, Pipeline


def register(subparsers: argparse._SubParsersAction) -> None:
    from convogen_tui.cli.generate import _backend_args, _lock_args, parallel_count

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
    parser.set_defaults(func=run_judge, model=None, max_tokens=None, temperature=None)


def judge_model_ref(args: argparse.Namespace, experiment: Experiment) -> str | None:
    """--judge-model, else the setup's judge model; None: the generator's own model."""
    setup = experiment.setup
    configured = setup.judge.model if setup is not None and setup.judge is not None else None
    return getattr(args, "judge_model", None) or configured


def judge_pipeline(args: argparse.Namespace, experiment: Experiment) -> Pipeline:
    """A pipeline on the judge model (the same loaded model when it is the generator's)."""
    from convogen_tui.cli.generate import _pipeline

    ref = judge_model_ref(args, experiment)
    judge_args = argparse.Namespace(**vars(args))
    if ref is not None:
        remote = (args.backend or (experiment.setup.backend.kind if experiment.setup else "")) == "openai"
        if remote or (args.base_urls and args.backend != "llama.cpp"):
            judge_args.api_model = ref  # a served model's name
        else:
            judge_args.model = ref
    return _pipeline(judge_args, experiment)


def same_model(args: argparse.Namespace, experiment: Experiment) -> bool:
    """Whether the judge is the generator's model (then one loaded model does both passes)."""
    from convogen_tui.llm.loader import backend_settings, resolve_experiment_model

    ref = judge_model_ref(args, experiment)
    if ref is None:
        return True
    if backend_settings(experiment, kind=args.backend, base_urls=args.base_urls).kind == "openai":
        return ref == args.api_model
    return resolve_experiment_model(experiment, ref) == resolve_experiment_model(experiment, args.model)


def report_plan(plan: JudgePlan) -> None:
    for problem in plan.problems:
        err(f"convogen: warning: not judged, unreadable: {problem}")
    if plan.stale:
        err(
            f"convogen: {plan.stale} judgment(s) are stale (judge.txt or the criteria changed since); "
            "judge them again with --again"
        )


def run_judged(args: argparse.Namespace, experiment: Experiment) -> int:
    """Judge every restyled pair without a judgment (all with --again), holding the run lock."""
    from convogen_tui.cli.generate import _execute, _parallel

    pipeline = judge_pipeline(args, experiment)
    plan = pipeline.judge_plan(again=args.again, limit=args.limit, seed=args.seed)
    report_plan(plan)
    if not plan.jobs:
        untouched = f"; {plan.not_restyled} not restyled yet" if plan.not_restyled else ""
        print(f"nothing to judge: {plan.judged + plan.stale} pair(s) already judged{untouched}")
        return 0
    print(f"judging {len(plan.jobs)} pair(s) on {', '.join(pipeline.judge_pass.settings.names)}")
    parallel = _parallel(args, pipeline, plan.jobs, False)
    return _execute(pipeline, plan.jobs, False, 0, parallel)


def run_judge(args: argparse.Namespace) -> int:
    from convogen_tui.cli.generate import _lock, _prepare

    experiment = open_experiment(args)
    if args.json and not args.calibration:
        raise ConvogenError(Problem(None, "--json goes with --calibration"))
    if args.calibration:
        return print_calibration(experiment, args.json)
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
