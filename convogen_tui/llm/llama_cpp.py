"""The llama.cpp backend (llama-cpp-python): GPU offload when built for it, streaming, cancel.

Loaded models are kept in this process and reused, so a rerun after editing a template starts
decoding at once; llama.cpp also reuses the KV cache of the longest shared prompt prefix.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from convogen_tui.core.errors import ModelError, Problem
from convogen_tui.core.experiment import SamplingSettings
from convogen_tui.llm.backend import Generation, GenerationStats, ModelInfo

FINGERPRINT_BYTES = 16 * 1024 * 1024


def gpu_offload_supported() -> bool:
    """True when this llama.cpp build can put layers on a GPU (CUDA, Metal, Vulkan...)."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def file_fingerprint(path: Path) -> str:
    """sha256 of the size and first 16 MiB: identifies a model file without reading 40 GB."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(FINGERPRINT_BYTES))
    return "sha256-16m:" + digest.hexdigest()


class LlamaCppBackend:
    """A GGUF model loaded in-process through llama-cpp-python."""

    def __init__(
        self,
        path: Path,
        n_ctx: int = 4096,
        n_gpu_layers: int | None = None,
        n_threads: int | None = None,
    ) -> None:
        import llama_cpp

        path = Path(path)
        _check_gguf(path)
        supported = gpu_offload_supported()
        if n_gpu_layers is None:
            n_gpu_layers = -1 if supported else 0
        threads = n_threads or os.cpu_count() or 1
        try:
            self.llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_gpu_layers=n_gpu_layers,
                n_threads=threads,
                n_threads_batch=threads,
                n_batch=512,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(
                Problem(
                    path,
                    f"llama.cpp could not load the model ({exc})",
                    hint="check the file is a complete GGUF that this llama.cpp supports; "
                    "for a GPU, lower --n-gpu-layers if memory runs out",
                )
            ) from None
        self._lock = threading.Lock()
        self.n_gpu_layers = n_gpu_layers
        meta = self.llama.metadata
        arch = meta.get("general.architecture", "unknown")
        n_layers = int(meta.get(f"{arch}.block_count", 0) or 0)
        model = self.llama._model
        self.info = ModelInfo(
            name=meta.get("general.name") or path.stem,
            path=path.resolve(),
            architecture=arch,
            chat_template=meta.get("tokenizer.chat_template"),
            bos_token=_token_text(model, self.llama.token_bos()),
            eos_token=_token_text(model, self.llama.token_eos()),
            n_ctx=self.llama.n_ctx(),
            n_ctx_train=model.n_ctx_train(),
            size_bytes=path.stat().st_size,
            fingerprint=file_fingerprint(path),
            gpu_layers=(n_layers + 1 if n_gpu_layers < 0 else n_gpu_layers) if supported else 0,
            n_layers=n_layers + 1 if n_layers else 0,
            gpu_offload_supported=supported,
            adds_bos=bool(model.add_bos_token()),
        )
        self._vocab = llama_cpp.llama_model_get_vocab(model.model)
        self._pieces: dict[int, bytes] = {}

    def piece(self, token: int) -> bytes:
        """The bytes of one token, cached: decoding calls this once per generated token."""
        cached = self._pieces.get(token)
        if cached is None:
            import ctypes

            import llama_cpp

            buf = ctypes.create_string_buffer(64)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            cached = self._pieces[token] = buf.raw[:n]
        return cached

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def tokenize(self, text: str) -> list[int]:
        return self.llama.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def stream(
        self,
        prompt: str,
        sampling: SamplingSettings,
        seed: int,
        cancel: threading.Event | None = None,
    ) -> Generation:
        tokens = self.tokenize(prompt)
        n_ctx = self.info.n_ctx
        if len(tokens) >= n_ctx:
            raise ModelError(
                Problem(
                    None,
                    f"the prompt is {len(tokens)} tokens but the context holds {n_ctx}",
                    hint=f'set "n_ctx" in expt-setup.json higher (the model was trained on '
                    f"{self.info.n_ctx_train}) or shorten the template",
                )
            )
        stats = GenerationStats(prompt_tokens=len(tokens))
        budget = min(sampling.max_tokens, n_ctx - len(tokens))
        return Generation(self._decode(tokens, sampling, seed, budget, stats, cancel), stats)

    def _decode(
        self,
        tokens: list[int],
        sampling: SamplingSettings,
        seed: int,
        budget: int,
        stats: GenerationStats,
        cancel: threading.Event | None,
    ) -> Iterator[str]:
        import llama_cpp

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        greedy = sampling.temperature <= 0
        with self._lock:
            self.llama.set_seed(seed & 0xFFFFFFFF)
            stats.started = time.perf_counter()
            stream = self.llama.generate(
                tokens,
                top_k=1 if greedy else sampling.top_k,
                top_p=1.0 if greedy else sampling.top_p,
                min_p=0.0,
                temp=sampling.temperature,
                repeat_penalty=sampling.repeat_penalty,
                reset=True,
            )
            stats.finish_reason = "length"
            try:
                for token in stream:
                    if cancel is not None and cancel.is_set():
                        stats.finish_reason = "cancelled"
                        break
                    if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                        stats.finish_reason = "stop"
                        break
                    stats.completion_tokens += 1
                    if stats.first_token_s is None:
                        stats.first_token_s = time.perf_counter() - stats.started
                    text = decoder.decode(self.piece(token))
                    if text:
                        yield text
                    if stats.completion_tokens >= budget:
                        break
                    if cancel is not None and cancel.is_set():
                        stats.finish_reason = "cancelled"
                        break
                tail = decoder.decode(b"", final=True)
                if tail:
                    yield tail
            finally:
                with contextlib.suppress(Exception):
                    stream.close()
                stats.elapsed_s = time.perf_counter() - stats.started

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.llama.close()


def _token_text(model: object, token: int) -> str:
    try:
        return model.token_get_text(token)  # type: ignore[attr-defined]
    except Exception:
        return ""


def _check_gguf(path: Path) -> None:
    if not path.is_file():
        raise ModelError(Problem(path, "model file not found"))
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise ModelError(
            Problem(
                path,
                "not a GGUF file",
                hint="llama.cpp reads .gguf files; convert the model or download a GGUF build",
            )
        )


_cache_lock = threading.Lock()
_loaded: dict[tuple[str, int, int | None], LlamaCppBackend] = {}


def load_llama(path: Path, n_ctx: int = 4096, n_gpu_layers: int | None = None) -> LlamaCppBackend:
    """Load a model once per process; asking for another model frees the one held (one fits a GPU)."""
    key = (str(Path(path).resolve()), n_ctx, n_gpu_layers)
    with _cache_lock:
        backend = _loaded.get(key)
        if backend is not None:
            return backend
        for old in _loaded.values():
            old.close()
        _loaded.clear()
        backend = LlamaCppBackend(Path(path), n_ctx=n_ctx, n_gpu_layers=n_gpu_layers)
        _loaded[key] = backend
        return backend


def is_loaded(path: Path, n_ctx: int = 4096, n_gpu_layers: int | None = None) -> bool:
    return (str(Path(path).resolve()), n_ctx, n_gpu_layers) in _loaded
