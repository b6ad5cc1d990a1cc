"""Open the backend an experiment asks for (or the command line overrides), reusing a loaded model.

Backends are a registry (:data:`BACKENDS`, kind -> opener): ``llama.cpp`` (the default) loads a GGUF
in this process; ``openai`` talks to OpenAI-compatible inference servers named in the setup's
``backend`` block or by --base-url. A new kind is one opener and one entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.making.backend import Backend
from convogen_tui.core.making.experiment import BackendSettings, Experiment
from convogen_tui.llm.resolve import resolve_model


def model_reference(experiment: Experiment, model: str | None = None) -> str | None:
    if model is not None:
        return model
    return experiment.setup.llm if experiment.setup else None


def resolve_experiment_model(experiment: Experiment, model: str | None = None) -> Path:
    """The GGUF file the experiment's ``llm`` (or ``model``, the --model override) names."""
    return resolve_model(
        model_reference(experiment, model), base=experiment.dir, project_root=experiment.project_root
    )


def backend_settings(experiment: Experiment, **overrides: object) -> BackendSettings:
    """The setup's backend block with command-line values (those not None) laid over it."""
    base = experiment.setup.backend if experiment.setup else BackendSettings()
    changes = {k: v for k, v in overrides.items() if v is not None and v != []}
    if changes.get("base_urls") and "kind" not in changes and base.kind == "llama.cpp":
        changes["kind"] = "openai"  # --base-url alone means the remote backend
    if not changes:
        return base
    try:
        return BackendSettings.model_validate({**base.model_dump(), **changes})
    except ValidationError as exc:
        error = exc.errors()[0]
        name = ".".join(str(p) for p in error["loc"])
        raise ConvogenError(Problem(None, f"backend {name}: {error['msg']}")) from None


@dataclass(frozen=True)
class BackendChoice:
    """What opening a backend may need: the experiment, its settings and the command line's."""

    experiment: Experiment
    settings: BackendSettings
    model: str | None = None
    n_gpu_layers: int | None = None
    threads: int | None = None

    @property
    def n_ctx(self) -> int:
        return self.experiment.setup.n_ctx if self.experiment.setup else 4096


def _open_llama(choice: BackendChoice) -> Backend:
    """A local GGUF through llama.cpp, loaded once per process."""
    from convogen_tui.llm.llama_cpp import default_threads, load_llama

    experiment = choice.experiment
    path = resolve_experiment_model(experiment, choice.model)
    setup_threads = experiment.setup.threads if experiment.setup else None
    threads = choice.threads or setup_threads or default_threads()
    return load_llama(path, n_ctx=choice.n_ctx, n_gpu_layers=choice.n_gpu_layers, n_threads=threads)


def _open_openai(choice: BackendChoice) -> Backend:
    """OpenAI-compatible inference servers (httpx is imported only when they are used)."""
    from convogen_tui.llm.openai_compat import OpenAIBackend

    settings = choice.settings
    options = settings.model_dump(include={"api_model", "concurrency", "api", "timeout_s", "stall_timeout_s"})
    return OpenAIBackend(settings.base_urls, n_ctx=choice.n_ctx, **options)


BACKENDS: dict[str, Callable[[BackendChoice], Backend]] = {"llama.cpp": _open_llama, "openai": _open_openai}


def open_backend(
    experiment: Experiment,
    model: str | None = None,
    n_gpu_layers: int | None = None,
    backend: BackendSettings | None = None,
    threads: int | None = None,
) -> Backend:
    """Open the backend the settings choose (a kind of :data:`BACKENDS`).

    CPU threads: ``threads`` (``--threads``), else the setup's ``"threads"``, else a default that
    leaves room for others (``llm.llama_cpp.default_threads``).
    """
    settings = backend or backend_settings(experiment)
    opener = BACKENDS.get(settings.kind)
    if opener is None:
        known = ", ".join(BACKENDS)
        problem = f"unknown backend kind {settings.kind!r}; known: {known}"
        raise ConvogenError(Problem(experiment.setup_file, problem))
    return opener(BackendChoice(experiment, settings, model, n_gpu_layers, threads))
