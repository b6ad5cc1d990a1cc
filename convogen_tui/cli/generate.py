"""`convogen generate` and `convogen restyle`: bulk runs over SSH, resumable, with progress."""

from __future__ import annotations

import argparse
import threading
from dataclasses import replace

from convogen_tui.cli.common import (
    add_experiment_arg,
    add_threads_arg,
    err,
    is_tty,
    open_experiment,
    positive_float,
    positive_int,
    temperature,
)
from convogen_tui.cli.progress import PlainReporter, RichReporter, summary_line
from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.judging.judge import load_judge
from convogen_tui.core.keeping.files import check_free_space
from convogen_tui.core.keeping.lock import Holder, RunLock
from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.core.keeping.versions import VersionBook, experiment_texts, version_names
from convogen_tui.core.making.backend import choose_parallel
from convogen_tui.core.making.check import seeds_for
from convogen_tui.core.making.experiment import Experiment
from convogen_tui.core.making.pairing import cells_to_pair
from convogen_tui.core.making.pipeline import Job, Pipeline
from convogen_tui.core.making.planner import Plan, PlanRequest
from convogen_tui.core.making.planner import plan as plan_jobs
from convogen_tui.core.making.seeds import Seed
from convogen_tui.llm.loader import BACKENDS


def parallel_count(text: str) -> int | None:
    """argparse type for --parallel: ``auto`` (None: the backend decides) or a whole number >= 1."""
    if text.strip().lower() == "auto":
        return None
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; give auto or a number of conversations") from None


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", help="model: default, a .gguf path, or OWNER/REPO:FILE.gguf (overrides llm)"
    )
    parser.add_argument(
        "--n-gpu-layers",
        type=int,
        default=None,
        help="layers to offload (-1 all; default all when llama.cpp has GPU support)",
    )
    parser.add_argument(
        "--max-tokens",
        type=positive_int,
        default=None,
        help="new tokens per pass (default from the setup, 1444)",
    )
    parser.add_argument(
        "--temperature",
        type=temperature,
        default=None,
        help="sampling temperature (default from the setup, 0.7)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="random seed: the same seed gives the same text on CPU"
    )
    parser.add_argument(
        "--parallel",
        type=parallel_count,
        default=None,
        metavar="auto|N",
        help="conversations decoded together on the model (default auto: the most that pays on this "
        "hardware, 64 on a GPU and 16 on a CPU, that fits free memory); on CPU the text is the same "
        "for any N",
    )
    parser.add_argument(
        "--constrain",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="sample under a grammar of the dialog's form (SocBot first, alternating, the turn "
        'target, no text around it) where the backend can (default: the setup\'s "constrain", on)',
    )
    add_threads_arg(parser)


def _backend_args(parser: argparse.ArgumentParser) -> None:
    """Where to generate: llama.cpp here, or OpenAI-compatible servers (key from the environment)."""
    group = parser.add_argument_group("inference servers (OpenAI-compatible API)")
    group.add_argument(
        "--backend", choices=list(BACKENDS), default=None, help="default: the setup's (llama.cpp)"
    )
    group.add_argument(
        "--base-url",
        action="append",
        dest="base_urls",
        metavar="URL",
        help="server base URL such as http://host:8000/v1 (repeatable: jobs spread over all); "
        "API key from CONVOGEN_API_KEY or OPENAI_API_KEY",
    )
    group.add_argument("--api-model", default=None, help="served model name (default: the one offered)")
    group.add_argument(
        "--concurrency", type=positive_int, default=None, help="requests in flight per server (4)"
    )
    group.add_argument(
        "--stall-timeout",
        type=positive_float,
        default=None,
        metavar="S",
        help="fail a request that sends no token for S seconds (default 60; the setup's stall_timeout_s)",
    )


def _lock_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        action="store_true",
        help="if another run is writing this experiment, wait for it to end instead of exiting",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate", help="generate conversations (and restyle them) for seeds x personas"
    )
    add_experiment_arg(parser)
    parser.add_argument("--seeds", help="seed file (TSV/CSV/JSONL); default: the setup's 'seeds'")
    parser.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="make N new conversations (jobs already done are skipped and do not count)",
    )
    parser.add_argument(
        "--personas",
        choices=["random", "all"],
        default="random",
        help="one random persona per seed, or every persona",
    )
    parser.add_argument("--motivation", action="append", help="only this motivation (repeatable)")
    parser.add_argument("--disposition", action="append", help="only this disposition (repeatable)")
    parser.add_argument(
        "--restyle",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="restyle each conversation as a thread (default on)",
    )
    parser.add_argument("--again", action="store_true", help="redo jobs that already have a conversation")
    parser.add_argument(
        "--judge",
        action="store_true",
        help="judge each pair as soon as it is restyled (criteria: the setup's judge block, judge.txt)",
    )
    parser.add_argument(
        "--judge-model",
        default=None,
        metavar="REF",
        help='judge model (default: the setup\'s "judge": {"model"}, else this run\'s model)',
    )
    parser.add_argument(
        "--fill",
        action="store_true",
        help="run only the seed x persona cells with no conversation yet (none in the trash either), "
        "balanced across personas; --limit N fills N of them",
    )
    parser.add_argument(
        "--pair-with",
        metavar="V",
        help="rerun, with the current texts, exactly the seed x persona cells version V made, each with "
        "the random seed its conversation recorded; adds conversations, never replaces (--limit, "
        "--seeds narrow it)",
    )
    parser.add_argument(
        "--refresh-stale",
        action="store_true",
        help="pair every conversation made by a version other than the current texts' with the "
        "current texts (the old ones stay until you delete them)",
    )
    _model_args(parser)
    _backend_args(parser)
    _lock_args(parser)
    parser.set_defaults(func=run_generate)

    restyle = subparsers.add_parser("restyle", help="restyle conversations that have no twin yet")
    add_experiment_arg(restyle)
    _model_args(restyle)
    _backend_args(restyle)
    _lock_args(restyle)
    restyle.set_defaults(func=run_restyle)


def _pipeline(args: argparse.Namespace, experiment: Experiment) -> Pipeline:
    from convogen_tui.llm.loader import backend_settings, open_backend

    sampling = experiment.sampling
    updates = {}
    if args.max_tokens is not None:
        updates["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        updates["temperature"] = args.temperature
    if updates:
        sampling = sampling.model_validate({**sampling.model_dump(), **updates})
    settings = backend_settings(
        experiment,
        kind=args.backend,
        base_urls=args.base_urls,
        api_model=args.api_model,
        concurrency=args.concurrency,
        stall_timeout_s=args.stall_timeout,
    )
    backend = open_backend(experiment, args.model, args.n_gpu_layers, settings, threads=args.threads)
    for warning in backend.warnings:
        err(f"convogen: warning: {warning}")
    return Pipeline(experiment, backend, sampling=sampling, constrain=args.constrain)


def _parallel(
    args: argparse.Namespace,
    pipeline: Pipeline,
    jobs: list[Job],
    restyle: bool,
    constraint: str | None = None,
) -> int:
    """--parallel or the backend's own choice (core.backend.choose_parallel), printed as used, with
    the constraint in force (``constraint``: another pass's own line, such as the judge's)."""
    tokens = pipeline.stream_tokens(jobs, restyle)
    choice = choose_parallel(pipeline.backend, args.parallel, len(jobs), tokens)
    print(choice.describe())
    print(constraint or pipeline.constraint_line())
    return choice.n


def _lock(args: argparse.Namespace, experiment: Experiment) -> RunLock:
    """The experiment's run lock (core.lock): one writer at a time; --wait waits for the holder."""

    def waiting(holder: Holder | None) -> None:
        who = holder.describe() if holder else "details not written yet"
        err(f"convogen: waiting for the run writing {experiment.name} to end ({who}); Ctrl-C stops waiting")

    lock = RunLock(experiment.dir).acquire(wait=args.wait, on_wait=waiting)
    if lock.took_over is not None:
        err(
            f"convogen: took over the lock of an earlier run that ended without releasing it "
            f"({lock.took_over.describe()})"
        )
    return lock


def _prepare(experiment: Experiment) -> None:
    """Before spending tokens: the output folders are writable with space to spare; crash leftovers go."""
    removed = ConversationStore(experiment.dir).prepare_run()
    if removed:
        print(f"removed {len(removed)} temporary file(s) left by an interrupted run")


def _execute(pipeline: Pipeline, plan: Plan, restyle: bool, skipped: int, parallel: int = 1) -> int:
    reporter = RichReporter() if is_tty() else PlainReporter()
    cancel = threading.Event()
    try:
        with reporter:
            for event in pipeline.run(plan.jobs, restyle=restyle, cancel=cancel, parallel=parallel):
                reporter.handle(event)
    except KeyboardInterrupt:
        cancel.set()
        err(
            f"convogen: interrupted after {reporter.model.conversations} conversation(s); no partial file "
            "was written. Run the same command again to resume."
        )
        return 130
    result = reporter.model.result
    assert result is not None
    print(summary_line(result, skipped))
    return 1 if result.failed else 0


def _request(args: argparse.Namespace, seeds: list[Seed], judge: bool = False) -> PlanRequest:
    """What `convogen generate` was asked for, for the planner."""
    request = PlanRequest(seeds, args.personas, args.motivation, args.disposition, args.limit, args.again)
    return replace(
        request,
        fill=args.fill,
        base_seed=args.seed,
        restyle=bool(args.restyle),
        resume=not args.fill,
        judge=judge,
    )


def run_generate(args: argparse.Namespace) -> int:
    experiment = open_experiment(args)
    seeds = seeds_for(experiment, args.seeds)
    for problem in seeds.problems:
        err(f"convogen: {problem}")
    with _lock(args, experiment):
        _prepare(experiment)
        judge_here = _judge_here(args, experiment)
        if args.pair_with or args.refresh_stale:
            seed_ids = {s.tweet_id for s in seeds.seeds} if args.seeds else None
            plan = _pair(args, experiment, seed_ids, judge_here)
            if plan is None:
                return 0
        else:
            plan = plan_jobs(_request(args, seeds.seeds, judge_here), experiment)
            _report_unreadable(plan)
            if not _announce(plan):
                return 0
        pipeline = _pipeline(args, experiment)
        _warn_space(experiment, pipeline, len(plan.jobs) - plan.resumed, bool(args.restyle))
        parallel = _parallel(args, pipeline, plan.jobs, bool(args.restyle))
        code = _execute(pipeline, plan, args.restyle, plan.already_done, parallel)
        return _judge_after(args, experiment, code, judge_here)


def _announce(plan: Plan) -> bool:
    """Say what the run will do (resuming, filling) or that there is nothing to do."""
    grid = plan.coverage
    counts = grid.counts() if grid is not None else {}
    if plan.resumed:
        print(
            f"resuming: {plan.resumed} conversation(s) saved earlier have no restyled twin; "
            "restyling them first"
        )
    if not plan.jobs:
        if grid is not None:
            print(
                f"nothing to fill: {counts['cells']} cell(s), {counts['done']} done, "
                f"{counts['flagged']} flagged, {counts['deleted']} deleted, none missing"
            )
        else:
            print(
                f"nothing to do: all {plan.already_done} job(s) already have a conversation (--again to redo)"
            )
        return False
    if grid is not None:
        print(f"filling {len(plan.jobs)} of {counts['missing']} missing cell(s) of {counts['cells']}")
    return True


def _judge_here(args: argparse.Namespace, experiment: Experiment) -> bool:
    """--judge with the run's own model: each pair is judged in the same run (judge.txt checked
    before any token); False with another judge model (it judges after) or without --judge."""
    if not args.judge:
        return False
    if not args.restyle:
        raise ConvogenError(Problem(None, "--judge judges restyled pairs: it cannot go with --no-restyle"))
    load_judge(experiment)
    return same_model(args, experiment)


def _judge_after(args: argparse.Namespace, experiment: Experiment, code: int, judged: bool) -> int:
    """--judge with another model: once the run is done, that model judges the new pairs."""
    if not args.judge or judged or code == 130:
        return code
    print("judging with the judge model now that generation is done")
    judge_args = argparse.Namespace(**{**vars(args), "again": False, "limit": None})
    return max(code, run_judged(judge_args, experiment))


def _pair(
    args: argparse.Namespace, experiment: Experiment, seed_ids: set[str] | None, judge: bool = False
) -> Plan | None:
    """--pair-with V / --refresh-stale: the planner's jobs for the cells V (or every stale version)
    made, each with its recorded random seed; None when there is nothing to do (said)."""
    if args.fill or args.again:
        option = "--fill" if args.fill else "--again"
        raise ConvogenError(Problem(None, f"--pair-with and --refresh-stale run named cells: drop {option}"))
    store = ConversationStore(experiment.dir)
    rows = store.list()
    version_names(experiment.dir, rows)
    current = experiment_texts(experiment)
    if current is None:
        raise ConvogenError(Problem(experiment.dir, "the current templates cannot be read"))
    if args.pair_with:
        entry = VersionBook(experiment.dir).find(args.pair_with)
        chosen = [r for r in rows if r.version == entry.id]
        what = f"the cells {entry.name} made"
    else:
        chosen = [r for r in rows if r.version != current.id]
        what = "the stale cells"
    cells, problems = cells_to_pair(experiment, store, chosen, args.limit, seed_ids, made_by=current.id)
    for problem in problems:
        err(f"convogen: warning: not paired, unreadable: {problem}")
    if not cells:
        print(f"nothing to do: the current texts already made {what} ({len(chosen)} conversation(s))")
        return None
    request = PlanRequest(
        cells=[c.cell for c in cells], base_seed=args.seed, restyle=bool(args.restyle), judge=judge
    )
    plan = plan_jobs(request, experiment, store)
    print(f"pairing {len(plan.jobs)} cell(s): {what}, again with the current texts and the same random seeds")
    return plan


def run_restyle(args: argparse.Namespace) -> int:
    experiment = open_experiment(args)
    with _lock(args, experiment):
        _prepare(experiment)
        plan = plan_jobs(PlanRequest(kind="restyle", base_seed=args.seed), experiment)
        _report_unreadable(plan)
        if not plan.jobs:
            print("nothing to do: every conversation has a restyled twin")
            return 0
        pipeline = _pipeline(args, experiment)
        return _execute(pipeline, plan, True, 0, _parallel(args, pipeline, plan.jobs, True))


# the judge pass (convogen judge, generate --judge) ---------------------------------------------
def judge_model_ref(args: argparse.Namespace, experiment: Experiment) -> str | None:
    """--judge-model, else the setup's judge model; None: the generator's own model."""
    setup = experiment.setup
    configured = setup.judge.model if setup is not None and setup.judge is not None else None
    return getattr(args, "judge_model", None) or configured


def judge_pipeline(args: argparse.Namespace, experiment: Experiment) -> Pipeline:
    """A pipeline on the judge model (the same loaded model when it is the generator's)."""
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


def report_plan(plan: Plan) -> None:
    for problem in plan.unreadable:
        err(f"convogen: warning: not judged, unreadable: {problem}")
    if plan.stale:
        err(
            f"convogen: {plan.stale} judgment(s) are stale (judge.txt or the criteria changed since); "
            "judge them again with --again"
        )


def judge_constraint_line(pipeline: Pipeline) -> str:
    """How the judge's answers are kept parseable on this backend."""
    judge = pipeline.judge_pass.settings
    low, high = judge.scale
    shape = f"JSON, {len(judge.criteria)} criteria {low}-{high}, rationale <= {judge.rationale_chars} chars"
    how = pipeline.backend.constraint_support()
    if how:
        return f"judge constrained ({how}): {shape}"
    return f"judge unconstrained on this backend: answers checked ({shape}), asked once more if unusable"


def run_judged(args: argparse.Namespace, experiment: Experiment) -> int:
    """Judge every restyled pair without a judgment (all with --again), holding the run lock."""
    pipeline = judge_pipeline(args, experiment)
    plan = pipeline.judge_plan(again=args.again, limit=args.limit, seed=args.seed)
    report_plan(plan)
    if not plan.jobs:
        untouched = f"; {plan.not_restyled} not restyled yet" if plan.not_restyled else ""
        print(f"nothing to judge: {plan.already_done + plan.stale} pair(s) already judged{untouched}")
        return 0
    print(f"judging {len(plan.jobs)} pair(s) on {', '.join(pipeline.judge_pass.settings.names)}")
    parallel = _parallel(args, pipeline, plan.jobs, False, judge_constraint_line(pipeline))
    return _execute(pipeline, plan, False, 0, parallel)


def _report_unreadable(plan: Plan) -> None:
    """Conversations without a twin that cannot be read are named (and left alone), never hidden."""
    for problem in plan.unreadable:
        err(f"convogen: warning: not restyled, unreadable: {problem}")


def _warn_space(experiment: Experiment, pipeline: Pipeline, n_jobs: int, restyle: bool) -> None:
    """A run's files, at most: each pass's text (4 bytes a token at most) plus its provenance."""
    per_pass = pipeline.sampling.max_tokens * 4 + 8 * 1024
    warning = check_free_space(experiment.dir, n_jobs * per_pass * (2 if restyle else 1))
    if warning is not None:
        err(f"convogen: {warning}")
