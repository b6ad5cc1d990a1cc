"""The whole-experiment check behind `convogen check` and the app's validity marks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from convogen_tui.core.errors import ConvogenError, Problem, errors_only
from convogen_tui.core.experiment import Experiment
from convogen_tui.core.seeds import SeedSet, read_seeds
from convogen_tui.core.templates import check_template

ModelResolver = Callable[[Experiment, "str | None"], Path]
"""Finds the model file an experiment (or a --model override) means; raises ConvogenError if none.
Passed in from above (``convogen_tui.llm.loader.resolve_experiment_model``): core does not know
where models live."""


@dataclass
class CheckReport:
    experiment: Experiment
    problems: list[Problem] = field(default_factory=list)
    personas: int = 0
    seeds: SeedSet | None = None
    model_path: Path | None = None

    @property
    def errors(self) -> list[Problem]:
        return errors_only(self.problems)

    @property
    def ok(self) -> bool:
        return not self.errors


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
) -> CheckReport:
    """Setup, persona files, templates, seeds and (given a resolver) the model, without loading it."""
    report = CheckReport(experiment, list(experiment.problems))
    if experiment.setup is None:
        return report
    report.personas = len(experiment.personas())
    for path, kind in (
        (experiment.conv_template_path, "conv-gen"),
        (experiment.restyle_template_path, "conv-restyle"),
    ):
        if not path.is_file():
            report.problems.append(Problem(path, "template file not found", hint=f"create {path.name}"))
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            report.problems.append(Problem(path, f"not UTF-8 text ({exc.reason})"))
            continue
        report.problems.extend(check_template(text, kind, path))  # type: ignore[arg-type]
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
        for problem in exc.problems or [Problem(None, str(exc))]:
            key = "llm" if model is None else "--model"
            report.problems.append(
                Problem(
                    experiment.setup_file if model is None else None,
                    problem.message,
                    key=key,
                    line=experiment.line_of("llm") if model is None else None,
                    hint=problem.hint,
                )
            )
    return report
