"""The whole-experiment check behind `convogen check` and the app's validity marks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from convogen_tui.core.errors import ConvogenError, HasProblems, Problem
from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.core.making.backend import Backend
from convogen_tui.core.making.experiment import Experiment
from convogen_tui.core.making.grammar import GrammarInForce, grammar_in_force, turn_disagreements
from convogen_tui.core.making.pipeline import Pipeline
from convogen_tui.core.making.seeds import SeedSet, read_seeds
from convogen_tui.core.making.templates import check_template

ModelResolver = Callable[[Experiment, "str | None"], Path]
"""Finds the model file an experiment (or a --model override) means; raises ConvogenError if none.
Passed in from above (``convogen_tui.llm.loader.resolve_experiment_model``): core does not know
where models live."""

TokenizerOpener = Callable[[Path, int], Backend]
"""Opens a model file's tokenizer (``convogen_tui.llm.vocab.open_vocab``: llama.cpp, vocabulary
only) as a backend that counts tokens and renders prompts; raises ModelError for a broken file."""

MAX_SEED_PROBLEMS = 20  # too-long seeds listed one by one; the rest are counted


@dataclass
class CheckReport(HasProblems):
    experiment: Experiment
    problems: list[Problem] = field(default_factory=list)
    personas: int = 0
    seeds: SeedSet | None = None
    model_path: Path | None = None
    grammar: GrammarInForce | None = None  # None: "constrain" is false, or max_tokens cannot hold it


def seeds_for(experiment: Experiment, seeds: Path | str | None = None) -> SeedSet:
    """Read the seed file given, or the one the experiment names; a clear error if none."""
    path = Path(seeds) if seeds else experiment.seeds_path()
    if path is None:
        raise ConvogenError(
            Problem(
                experiment.setup_file,
                "no seed file",
                key="seeds",
                hint='pass --seeds FILE or add "seeds": "../datasets/FILE.tsv" to the setup',
            )
        )
    return read_seeds(path)


def check_experiment(
    experiment: Experiment,
    seeds: Path | str | None = None,
    model: str | None = None,
    resolve_model: ModelResolver | None = None,
    open_tokenizer: TokenizerOpener | None = None,
) -> CheckReport:
    """Every problem ``generate`` would hit, found without loading the model's weights.

    Setup, persona files, templates, seeds, the output folders (writable, space left) and, given
    a resolver, the model file; given a tokenizer too, the file is opened (a broken one is
    reported) and every seed's prompt is counted against the context.
    """
    report = CheckReport(experiment, list(experiment.problems))
    report.problems.extend(ConversationStore(experiment.dir).writable_problems())
    if experiment.setup is None:
        return report
    report.personas = len(experiment.personas())
    texts: dict[str, str] = {}
    templates = [
        (experiment.conv_template_path, "conv-gen"),
        (experiment.restyle_template_path, "conv-restyle"),
    ]
    if experiment.setup.judge is not None:
        templates.append((experiment.judge_template_path, "judge"))
    elif experiment.judge_template_path.is_file():
        report.problems.append(_judge_without_criteria(experiment))
    for path, kind in templates:
        if not path.is_file():
            report.problems.append(Problem(path, "template file not found", hint=f"create {path.name}"))
            continue
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            report.problems.append(Problem(path, f"not UTF-8 text ({exc.reason})"))
            continue
        report.problems.extend(check_template(text, kind, path))  # type: ignore[arg-type]
        texts[kind] = text
    _check_grammar(report, texts.get("conv-gen", ""), texts.get("conv-restyle", ""))
    try:
        report.seeds = seeds_for(experiment, seeds)
        report.problems.extend(report.seeds.problems)
        if not report.seeds.seeds:
            report.problems.append(Problem(report.seeds.path, "no usable seed rows"))
    except ConvogenError as exc:
        report.problems.extend(exc.problems or [Problem(None, str(exc))])
    if resolve_model is None:
        return report
    try:
        report.model_path = resolve_model(experiment, model)
    except ConvogenError as exc:
        report.problems.extend(_model_problems(experiment, model, exc))
        return report
    if open_tokenizer is None or experiment.setup.backend.kind != "llama.cpp":
        return report
    try:
        tokenizer = open_tokenizer(report.model_path, experiment.setup.n_ctx)
    except ConvogenError as exc:
        report.problems.extend(_model_problems(experiment, model, exc))
        return report
    try:
        if report.seeds is not None:
            report.problems.extend(prompt_length_problems(experiment, tokenizer, report.seeds))
    finally:
        tokenizer.close()
    return report


def _judge_without_criteria(experiment: Experiment) -> Problem:
    return Problem(
        experiment.judge_template_path,
        "a judge template but no criteria to judge",
        key="judge",
        hint='add a "judge": {"criteria": {...}} block to expt-setup.json (see the sample), '
        "or remove judge.txt",
        severity="warning",
    )


def _check_grammar(report: CheckReport, conv_text: str, restyle_text: str) -> None:
    """The grammars a run uses (core/making/grammar.py), and a template whose "N turns" disagrees."""
    experiment = report.experiment
    assert experiment.setup is not None
    quality = experiment.setup.quality.resolve(conv_text, restyle_text)
    report.problems.extend(turn_disagreements(experiment.conv_template_path, conv_text, quality))
    if not experiment.setup.constrain:
        return
    try:
        report.grammar = grammar_in_force(quality, experiment.sampling.max_tokens)
    except ConvogenError as exc:
        problem = exc.problems[0] if exc.problems else Problem(None, str(exc))
        line = experiment.line_of("sampling.max_tokens") or experiment.line_of("sampling")
        message = f"{problem.message}: a run goes unconstrained"  # as Pipeline.constraint_line says
        report.problems.append(
            Problem(experiment.setup_file, message, problem.key, line, problem.hint, severity="warning")
        )


def _model_problems(experiment: Experiment, model: str | None, exc: ConvogenError) -> list[Problem]:
    """A model that cannot be found or read, reported at the setup's ``llm`` (or at --model)."""
    key = "llm" if model is None else "--model"
    return [
        Problem(
            experiment.setup_file if model is None else None,
            f"{problem.file}: {problem.message}" if problem.file else problem.message,
            key=key,
            line=experiment.line_of("llm") if model is None else None,
            hint=problem.hint,
        )
        for problem in exc.problems or [Problem(None, str(exc))]
    ]


def prompt_length_problems(experiment: Experiment, tokenizer: Backend, seeds: SeedSet) -> list[Problem]:
    """Seeds whose prompt does not fit the context (errors, with their line), and those that
    leave the conversation or its restyle less than max_tokens (one warning each kind).

    Each seed is counted with the persona whose texts take the most tokens, in the exact prompt
    ``generate`` sends (the same templates, system message, cue and chat format).
    """
    try:
        pipeline = Pipeline(experiment, tokenizer)  # renders prompts exactly as generate does
    except ConvogenError:
        return []  # a broken setup or template: reported above
    personas = experiment.personas()
    if not personas:
        return []
    widest = max(personas, key=lambda p: tokenizer.count_tokens(f"{p.motivation_text}\n{p.disposition_text}"))
    n_ctx, max_tokens = tokenizer.info.n_ctx, experiment.sampling.max_tokens
    too_long: list[Problem] = []
    short_conv: list[int] = []
    short_restyle: list[int] = []
    for seed in seeds.seeds:
        n = tokenizer.count_tokens(pipeline.generation_prompt(seed, widest))
        if n >= n_ctx:
            too_long.append(
                Problem(
                    seeds.path,
                    f"seed {seed.tweet_id} makes a {n}-token prompt (persona {widest.label}) but the "
                    f"context holds {n_ctx}",
                    line=seed.line,
                    hint='shorten the seed or the template, or raise "n_ctx" in expt-setup.json',
                )
            )
            continue
        if n + max_tokens > n_ctx:
            short_conv.append(seed.line)
        restyle = tokenizer.count_tokens(pipeline.restyle_prompt(seed.tweet, ""))
        if restyle + max_tokens >= n_ctx:
            short_restyle.append(seed.line)
    problems = too_long[:MAX_SEED_PROBLEMS]
    if len(too_long) > MAX_SEED_PROBLEMS:
        more = len(too_long) - MAX_SEED_PROBLEMS
        problems.append(Problem(seeds.path, f"... and {more} more seeds too long for the context"))
    for lines, what in (
        (short_conv, "leave the conversation fewer than max_tokens"),
        (short_restyle, "would not leave room to restyle a conversation of max_tokens"),
    ):
        if lines:
            problems.append(
                Problem(
                    seeds.path,
                    f"{len(lines)} seed(s) {what} ({max_tokens}) in a context of {n_ctx} tokens "
                    f"(first on line {lines[0]}); long conversations will be cut",
                    key="n_ctx",
                    hint='raise "n_ctx" or lower "max_tokens" in expt-setup.json',
                    severity="warning",
                )
            )
    return problems
