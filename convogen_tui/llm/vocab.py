"""A model's tokenizer without its weights: what `convogen check` counts prompt tokens with.

llama.cpp loads a GGUF with ``vocab_only`` in a fraction of a second whatever the model's size, so
``check`` can tokenize every seed's prompt exactly as ``generate`` would, and learns at the same
time whether the file is a whole GGUF that llama.cpp can open.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from convogen_tui.core.errors import ModelError, Problem
from convogen_tui.core.making.backend import Backend, Generation, Request
from convogen_tui.llm.gguf_info import read_gguf_info
from convogen_tui.llm.llama_cpp import _backend_init, _check_gguf, model_info


class VocabBackend(Backend):
    """Counts tokens and renders prompts like the loaded model would; cannot generate."""

    def __init__(self, path: Path, n_ctx: int = 4096) -> None:
        import llama_cpp
        from llama_cpp._internals import LlamaModel
        from llama_cpp._logger import set_verbose

        path = Path(path)
        _check_gguf(path)
        read_gguf_info(path)  # a truncated or damaged file is one clear line, before llama.cpp sees it
        _backend_init()
        set_verbose(False)
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        params.n_gpu_layers = 0
        try:
            model = LlamaModel(path_model=str(path), params=params, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(
                Problem(path, f"llama.cpp could not read the model ({exc})", hint="pull or convert it again")
            ) from None
        self.model = model
        self.info = model_info(model, path, n_ctx)

    def count_tokens(self, text: str) -> int:
        """The same count as the loaded model's (the same tokenizer call)."""
        return len(self.model.tokenize(text.encode("utf-8"), add_bos=True, special=True))

    def stream(self, request: Request, cancel: threading.Event | None = None) -> Generation:
        raise ModelError("a vocabulary-only model cannot generate; load the model for that")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.model.close()


def open_vocab(path: Path, n_ctx: int = 4096) -> VocabBackend:
    return VocabBackend(path, n_ctx)
