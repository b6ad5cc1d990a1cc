"""Experiment folders: the expt-setup.json model, path resolution in the original style, validation.

An experiment lives in ``datasets/inst-templates/<name>/``. The original notebooks wrote paths
relative to ``notebooks/`` (``../datasets/inst-templates/expt3/motivations/distrust.txt``); those
files are read unchanged, and so are paths relative to the experiment or to the project.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from convogen_tui.core.errors import ConvogenError, HasProblems, Problem
from convogen_tui.core.judging.criteria import JudgeSettings
from convogen_tui.core.judging.quality import QualitySettings
from convogen_tui.core.making.jsonpos import key_lines, key_path
from convogen_tui.core.persona import PersonaName, persona_label

SETUP_FILE = "expt-setup.json"
CONV_TEMPLATE = "conv-gen.txt"
RESTYLE_TEMPLATE = "conv-restyle.txt"
JUDGE_TEMPLATE = "judge.txt"
CONVERSATIONS = "conversations"
RESTYLED = "restyled-conversations"
TRASH = "trash"
JUDGMENTS = "judgments"


class SamplingSettings(BaseModel):
    """Sampling for both passes; the defaults are those of the original notebooks."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    temperature: float = Field(0.7, ge=0, le=5)
    top_p: float = Field(0.95, gt=0, le=1)
    top_k: int = Field(50, ge=0)
    repeat_penalty: float = Field(
        1.15, ge=0, validation_alias=AliasChoices("repeat_penalty", "repetition_penalty")
    )
    max_tokens: int = Field(1444, ge=1, validation_alias=AliasChoices("max_tokens", "max_new_tokens"))


class PassSettings(BaseModel):
    """System message and task cue for one pass (generation or restyling)."""

    model_config = ConfigDict(extra="forbid")

    system: str | None = None
    cue: str | None = None


class BackendSettings(BaseModel):
    """Where generation runs: llama.cpp in this process, or OpenAI-compatible inference servers."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["llama.cpp", "openai"] = "llama.cpp"
    base_urls: list[str] = Field(default_factory=list, validation_alias=AliasChoices("base_urls", "base_url"))
    api_model: str | None = None
    concurrency: int = Field(4, ge=1, le=256)  # requests in flight per endpoint
    api: Literal["auto", "completions", "chat"] = "auto"
    timeout_s: float = Field(120.0, gt=0)  # an endpoint silent this long counts as failed
    stall_timeout_s: float = Field(60.0, gt=0)  # a request with no new token this long fails (keep-alives)

    @field_validator("base_urls", mode="before")
    @classmethod
    def _one_url(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class DispositionEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1)
    path: str = Field(min_length=1)


class UserProfile(BaseModel):
    model_config = ConfigDict(extra="allow")

    motivation: str = Field(min_length=1)
    path: str = Field(min_length=1)
    dispositions: list[DispositionEntry] = Field(min_length=1)


class ExperimentSetup(BaseModel):
    """The contents of expt-setup.json. Unknown keys are kept, so old files read unchanged."""

    model_config = ConfigDict(extra="allow")

    llm: str | None = None
    user_profiles: list[UserProfile] = Field(min_length=1)
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    prompt_format: Literal["auto", "llama2", "chat-template"] = "auto"
    generation: PassSettings = Field(default_factory=PassSettings)
    restyle: PassSettings = Field(default_factory=PassSettings)
    seeds: str | None = None
    n_ctx: int = Field(4096, ge=256)
    backend: BackendSettings = Field(default_factory=BackendSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)  # thresholds of the quality rules
    threads: int | None = Field(None, ge=1, le=1024)  # llama.cpp CPU threads; None: a shared-machine default
    judge: JudgeSettings | None = None  # the judge pass's criteria and scale (judge.txt is its template)
    # sample conversations and restyles under a grammar of their form where the backend can
    # (core/making/grammar.py); false, or --no-constrain, lets the model write freely
    constrain: bool = True


def project_root_of(expt_dir: Path) -> Path:
    """The folder holding ``datasets/`` (and once ``notebooks/``) for an experiment folder."""
    for parent in expt_dir.resolve().parents:
        if parent.name == "datasets":
            return parent.parent
    return expt_dir.resolve().parent


def resolve_setup_path(raw: str, expt_dir: Path) -> Path:
    """Find the file a setup path means; the notebook-relative reading wins when files are missing."""
    path = Path(raw).expanduser()
    if path.is_absolute():
        return path
    project = project_root_of(expt_dir)
    candidates = [
        (project / "notebooks" / path).resolve(),
        (expt_dir / path).resolve(),
        (project / path).resolve(),
    ]
    parts = path.as_posix().split("/")
    if "inst-templates" in parts:
        tail = parts[parts.index("inst-templates") + 1 :]
        candidates.append(expt_dir.resolve().parent.joinpath(*tail))
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return candidates[0] if raw.startswith("..") else candidates[1]


@dataclass(frozen=True)
class Persona(PersonaName):
    """One (motivation, disposition) pair with the texts that fill the template."""

    motivation_text: str
    disposition_text: str


@dataclass
class Experiment(HasProblems):
    """An experiment folder, read once; problems are collected, not raised."""

    dir: Path
    setup: ExperimentSetup | None
    problems: list[Problem] = field(default_factory=list)
    setup_text: str = ""

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def setup_file(self) -> Path:
        return self.dir / SETUP_FILE

    @property
    def conv_template_path(self) -> Path:
        return self.dir / CONV_TEMPLATE

    @property
    def restyle_template_path(self) -> Path:
        return self.dir / RESTYLE_TEMPLATE

    @property
    def judge_template_path(self) -> Path:
        return self.dir / JUDGE_TEMPLATE

    @property
    def judgments_dir(self) -> Path:
        return self.dir / JUDGMENTS

    @property
    def conversations_dir(self) -> Path:
        return self.dir / CONVERSATIONS

    @property
    def restyled_dir(self) -> Path:
        return self.dir / RESTYLED

    @property
    def trash_dir(self) -> Path:
        return self.dir / TRASH

    @property
    def project_root(self) -> Path:
        return project_root_of(self.dir)

    @property
    def sampling(self) -> SamplingSettings:
        return self.setup.sampling if self.setup else SamplingSettings()

    def resolve(self, raw: str) -> Path:
        return resolve_setup_path(raw, self.dir)

    @cached_property
    def _key_lines(self) -> dict[str, int]:
        return key_lines(self.setup_text)

    def line_of(self, key: str) -> int | None:
        return self._key_lines.get(key)

    def personas(self) -> list[Persona]:
        """Every (motivation, disposition) pair whose files can be read, in setup order."""
        if self.setup is None:
            return []
        out = []
        for profile in self.setup.user_profiles:
            motivation_text = _read_text(self.resolve(profile.path))
            if motivation_text is None:
                continue
            for disposition in profile.dispositions:
                disposition_text = _read_text(self.resolve(disposition.path))
                if disposition_text is None:
                    continue
                out.append(Persona(profile.motivation, disposition.name, motivation_text, disposition_text))
        return out

    def seeds_path(self) -> Path | None:
        """The seed file the setup names, or the only .tsv beside the experiments."""
        if self.setup and self.setup.seeds:
            return self.resolve(self.setup.seeds)
        datasets = self.project_root / "datasets"
        tsvs = sorted(datasets.glob("*.tsv")) if datasets.is_dir() else []
        return tsvs[0] if len(tsvs) == 1 else None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8-sig").strip()
    except (OSError, UnicodeDecodeError):
        return None


def find_experiments(root: Path) -> list[Path]:
    """Experiment folders under a datasets root (``root/inst-templates/*``) or a folder of them."""
    root = Path(root)
    bases = [root / "inst-templates", root]
    seen: list[Path] = []
    for base in bases:
        if not base.is_dir():
            continue
        for child in sorted(base.iterdir()):
            if child.is_dir() and (child / SETUP_FILE).exists() and child not in seen:
                seen.append(child)
    return seen


def locate_experiment(ref: str | Path, root: Path | None = None) -> Path:
    """An experiment folder from a path or a name under the root; a clear error otherwise."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    root = Path(root) if root else Path("datasets")
    for base in (root / "inst-templates", root):
        if (base / str(ref)).is_dir():
            return base / str(ref)
    names = ", ".join(p.name for p in find_experiments(root)) or "none"
    raise ConvogenError(
        Problem(
            None,
            f"no experiment folder '{ref}'",
            hint=f"experiments under {root}: {names}; pass a folder path or --root",
        )
    )


def load_experiment(ref: str | Path, root: Path | None = None) -> Experiment:
    """Read an experiment folder and collect every problem in its setup and persona files."""
    expt_dir = locate_experiment(ref, root)
    setup_file = expt_dir / SETUP_FILE
    if not setup_file.exists():
        problem = Problem(
            setup_file, "missing", hint="every experiment needs an expt-setup.json; copy the sample's"
        )
        return Experiment(expt_dir, None, [problem])
    try:
        text = setup_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        return Experiment(expt_dir, None, [Problem(setup_file, f"not UTF-8 text ({exc.reason})")])
    experiment = Experiment(expt_dir, None, [], text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        experiment.problems.append(
            Problem(
                setup_file,
                f"invalid JSON: {exc.msg} at column {exc.colno}",
                line=exc.lineno,
                hint="fix the syntax; a trailing comma or a missing quote is the usual cause",
            )
        )
        return experiment
    try:
        experiment.setup = ExperimentSetup.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            key = key_path(error["loc"])
            experiment.problems.append(
                Problem(
                    setup_file,
                    _pydantic_message(error),
                    key=key or None,
                    line=experiment.line_of(key) if key else None,
                )
            )
        return experiment
    experiment.problems.extend(_check_files(experiment))
    return experiment


def _pydantic_message(error: dict) -> str:
    kind = error.get("type", "")
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key; remove it or check its spelling"
    return str(error.get("msg", "invalid value"))


def _check_files(experiment: Experiment) -> list[Problem]:
    """Every motivation and disposition file the setup names must exist: list each missing one."""
    assert experiment.setup is not None
    problems: list[Problem] = []
    setup_file = experiment.setup_file
    for i, profile in enumerate(experiment.setup.user_profiles):
        entries = [(f"user_profiles[{i}].path", "motivation", profile.motivation, profile.path)]
        entries += [
            (f"user_profiles[{i}].dispositions[{j}].path", "disposition", d.name, d.path)
            for j, d in enumerate(profile.dispositions)
        ]
        for key, kind, name, raw in entries:
            resolved = experiment.resolve(raw)
            if not resolved.is_file():
                problems.append(
                    Problem(
                        setup_file,
                        f"{kind} file for '{name}' not found: {resolved}",
                        key=key,
                        line=experiment.line_of(key),
                        hint=f"create it with a short description of the {kind}, or fix the path",
                    )
                )
            elif _read_text(resolved) in (None, ""):
                problems.append(
                    Problem(
                        resolved,
                        f"{kind} file for '{name}' is empty or not UTF-8 text",
                        key=key,
                        line=experiment.line_of(key),
                    )
                )
    names: dict[tuple[str, str], str] = {}
    for i, profile in enumerate(experiment.setup.user_profiles):
        for j, d in enumerate(profile.dispositions):
            key = f"user_profiles[{i}].dispositions[{j}].name"
            pair = (profile.motivation, d.name)
            if pair in names:
                problems.append(
                    Problem(
                        setup_file,
                        f"persona {persona_label(*pair)} is listed twice (first at {names[pair]})",
                        key=key,
                        line=experiment.line_of(key),
                        severity="warning",
                    )
                )
            names.setdefault(pair, key)
    return problems
