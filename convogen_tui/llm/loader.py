"""Open the backend an experiment asks for (or --model overrides), reusing a loaded model."""

from __future__ import annotations

from convogen_tui.core.experiment import Experiment
from convogen_tui.llm.backend import Backend
from convogen_tui.llm.llama_cpp import load_llama
from convogen_tui.llm.resolve import resolve_model


def model_reference(experiment: Experiment, model: str | None = None) -> str | None:
    if model is not None:
        return model
    return experiment.setup.llm if experiment.setup else None


def open_backend(
    experiment: Experiment, model: str | None = None, n_gpu_layers: int | None = None
) -> Backend:
    """Resolve the model reference and load it (once per process) with the experiment's context."""
    path = resolve_model(
        model_reference(experiment, model), base=experiment.dir, project_root=experiment.project_root
    )
    n_ctx = experiment.setup.n_ctx if experiment.setup else 4096
    return load_llama(path, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers)
