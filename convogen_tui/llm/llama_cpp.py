"""The llama.cpp backend (llama-cpp-python): GPU offload when built for it, streaming, cancel, batching.

Loaded models are kept in this process and reused, so a rerun after editing a template starts
decoding at once; the engine also reuses the KV cache of the longest shared prompt prefix.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from convogen_tui.core.errors import ModelError, Problem
from convogen_tui.core.making import backend
from convogen_tui.core.making.backend import Backend
from convogen_tui.llm.llama_engine import EXACT_CHUNK, MAX_SEQUENCES, LlamaEngine, Work, cells_for
from convogen_tui.llm.sampler import check_grammar

FINGERPRINT_BYTES = 16 * 1024 * 1024
# --parallel auto: the most streams that pay. A GPU decoding a big model is bound by reading the
# weights, once per step for every stream: raw llama.cpp on an H200 (70B Q4_0) went 58, 158, 201,
# 369, 583, 860 tok/s at 1, 4, 8, 16, 32, 64 sequences. A CPU is compute bound; batching still
# paid 1.2x at 4, 1.5x at 8 and 1.6x at 16 on 2 cores (benchmarks/RESULTS.md).
GPU_AUTO_PARALLEL = 64
CPU_AUTO_PARALLEL = 16
MEMORY_HEADROOM = 0.9  # of free memory for the KV cache; the rest for llama.cpp's compute buffers
GPU_BATCH = 2048  # prompt tokens per llama_decode (and micro-batch) with GPU offload
CPU_BATCH = 512

_init_lock = threading.Lock()
_initialized = False


def _backend_init() -> None:
    global _initialized
    with _init_lock:
        if not _initialized:
            import llama_cpp

            llama_cpp.llama_backend_init()
            _initialized = True


def default_threads() -> int:
    """CPU threads when nobody says: half the CPUs this process may use, 1 to 8.

    llama.cpp's threads spin while they wait, so taking every core starves the app's own UI and
    anyone else on a shared machine; decode speed is bound by memory bandwidth well before 8.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    return max(1, min(usable // 2, 8))


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


class LlamaCppBackend(Backend):
    """A GGUF model loaded in-process through llama-cpp-python's low-level API.

    Generation runs through :class:`LlamaEngine` (our own decode loop): ``stream`` is one sequence,
    ``run_many`` decodes up to ``parallel`` sequences together in the same context.
    """

    #: one stream goes through run_many too (the same engine loop), so its prompt progress is seen
    always_run_many = True

    def __init__(
        self,
        path: Path,
        n_ctx: int = 4096,
        n_gpu_layers: int | None = None,
        n_threads: int | None = None,
    ) -> None:
        import llama_cpp
        from llama_cpp._internals import LlamaModel
        from llama_cpp._logger import set_verbose

        path = Path(path)
        _check_gguf(path)
        _backend_init()
        set_verbose(False)
        supported = gpu_offload_supported()
        if n_gpu_layers is None:
            n_gpu_layers = -1 if supported else 0
        threads = n_threads or default_threads()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0x7FFFFFFF if n_gpu_layers < 0 else n_gpu_layers
        try:
            model = LlamaModel(path_model=str(path), params=params, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(
                Problem(
                    path,
                    f"llama.cpp could not load the model ({exc})",
                    hint="check the file is a complete GGUF that this llama.cpp supports; "
                    "for a GPU, lower --n-gpu-layers if memory runs out",
                )
            ) from None
        self.model = model
        self.n_gpu_layers = n_gpu_layers
        meta = model.metadata()
        self.metadata = meta
        arch = meta.get("general.architecture", "unknown")
        n_layers = int(meta.get(f"{arch}.block_count", 0) or 0)
        self.info = model_info(
            model,
            path,
            n_ctx,
            fingerprint=file_fingerprint(path),
            gpu_layers=(n_layers + 1 if n_gpu_layers < 0 else n_gpu_layers) if supported else 0,
            n_layers=n_layers + 1 if n_layers else 0,
            gpu_offload_supported=supported,
        )
        self._vocab = model.vocab
        self._pieces: dict[int, bytes] = {}
        self.n_threads = threads
        on_gpu = supported and n_gpu_layers != 0
        self.on_gpu = on_gpu
        # on CPU: same text alone or batched, with or without a cached prefix (llama_engine's note)
        self.engine = LlamaEngine(
            model.model,
            self._vocab,
            n_ctx,
            threads,
            self.piece,
            n_batch=GPU_BATCH if on_gpu else CPU_BATCH,
            flash_attn=None if on_gpu else False,
            chunk=1 if on_gpu else EXACT_CHUNK,
        )

    # tokens ------------------------------------------------------------------------------
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

    def set_threads(self, n_threads: int) -> None:
        """CPU threads from now on (``--threads``, ``"threads"`` in the setup); no reload needed."""
        self.n_threads = n_threads
        self.engine.set_threads(n_threads)

    def describe(self) -> str:
        line = super().describe()
        if self.info.offload_summary.startswith("CPU"):
            line += f" · {self.n_threads} thread{'s' if self.n_threads != 1 else ''}"
        return line

    def tokenize(self, text: str) -> list[int]:
        return self.model.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    # settings ----------------------------------------------------------------------------
    @property
    def share_prefix(self) -> bool:
        """Reuse cached KV of a shared prompt prefix (on by default; tests turn it off to compare)."""
        return self.engine.share_prefix

    @share_prefix.setter
    def share_prefix(self, value: bool) -> None:
        self.engine.share_prefix = value

    @property
    def ignore_eos(self) -> bool:
        """Decode every request to its full budget (benchmarks need fixed token counts)."""
        return self.engine.ignore_eos

    @ignore_eos.setter
    def ignore_eos(self, value: bool) -> None:
        self.engine.ignore_eos = value

    def kv_bytes_per_token(self) -> int:
        """KV cache bytes one token of one sequence takes (f16 K and V, every layer)."""
        meta, arch = self.metadata, self.info.architecture
        layers = int(meta.get(f"{arch}.block_count", 0) or 0)
        heads = int(meta.get(f"{arch}.attention.head_count", 0) or 0)
        kv_heads = int(meta.get(f"{arch}.attention.head_count_kv", heads) or heads)
        embd = int(meta.get(f"{arch}.embedding_length", 0) or 0)
        head_dim = int(meta.get(f"{arch}.attention.key_length", 0) or 0) or (embd // heads if heads else 0)
        return 2 * layers * kv_heads * head_dim * 2

    def stream_cells(self, stream_tokens: int | None = None) -> int:
        """KV cells one stream gets for requests of up to ``stream_tokens`` (None: n_ctx) tokens."""
        return cells_for(stream_tokens or self.info.n_ctx, self.info.n_ctx)

    def memory_for(self, parallel: int, stream_tokens: int | None = None) -> int:
        """The KV cache of ``parallel`` streams sized for ``stream_tokens``: what reserve allocates."""
        return self.kv_bytes_per_token() * self.stream_cells(stream_tokens) * parallel

    def memory_available(self) -> int | None:
        """Free VRAM when layers are offloaded (nvidia-smi), else available RAM."""
        from convogen_tui.llm.gpu import free_memory_bytes

        return free_memory_bytes(on_gpu=self.on_gpu)

    def auto_parallel(self, n_jobs: int, stream_tokens: int | None = None) -> tuple[int, str]:
        """The most streams that pay on this hardware (64 on a GPU, 16 on a CPU) and fit memory."""
        cap, where = (GPU_AUTO_PARALLEL, "a GPU") if self.on_gpu else (CPU_AUTO_PARALLEL, "a CPU")
        cells = self.stream_cells(stream_tokens)
        per_stream = self.memory_for(1, stream_tokens)
        available = self.memory_available()
        if available is None:
            return cap, f"auto: the most that pays on {where}; free memory unknown"
        budget = available * MEMORY_HEADROOM
        fits = min(MAX_SEQUENCES, int(budget // per_stream)) if per_stream else MAX_SEQUENCES
        gib = available / 2**30
        if fits >= cap:
            return cap, f"auto: the most that pays on {where}; {cells:,} KV cells each, {gib:,.1f} GiB free"
        return max(1, fits), (
            f"auto: the most whose KV cache fits ({cells:,} cells, {per_stream / 2**20:,.0f} MiB each; "
            f"{gib:,.1f} GiB free); {cap} would pay on {where}"
        )

    def reserve(self, parallel: int, stream_tokens: int | None = None) -> None:
        """Allocate the KV cache now: ``parallel`` streams of :meth:`stream_cells` cells."""
        self.engine.reserve(max(1, parallel), stream_tokens or self.info.n_ctx)

    # generation --------------------------------------------------------------------------
    def constraint_support(self) -> Literal["grammar", "json_schema", ""]:
        """Any GBNF grammar, per sequence, inside the batched decode (llm/sampler.py)."""
        return "grammar"

    def _work(self, request: backend.Request) -> Work:
        if request.constraint is not None:
            check_grammar(self._vocab, request.constraint)  # a grammar that does not parse fails here
        tokens = self.tokenize(request.prompt)
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
        budget = min(request.sampling.max_tokens, n_ctx - len(tokens))
        stats = backend.GenerationStats(prompt_tokens=len(tokens), constrained=request.constraint is not None)
        return Work(request, tokens, budget, stats)

    def stream(self, request: backend.Request, cancel: threading.Event | None = None) -> backend.Generation:
        work = self._work(request)
        return backend.Generation(self._single(work, cancel or threading.Event()), work.stats)

    def _single(self, work: Work, cancel: threading.Event) -> Iterator[str]:
        pending: list[Work] = [work]

        def pull() -> Work | None:
            return pending.pop() if pending else None

        # one slot in the shared context: the same loop, so the same text as inside a batch
        for event in self.engine.run(pull, cancel, 1):
            if isinstance(event, backend.StreamChunk):
                yield event.text
            elif isinstance(event, backend.StreamFailed):
                raise ModelError(Problem(None, event.message))

    def run_many(
        self, next_request: backend.NextRequest, cancel: threading.Event, parallel: int
    ) -> Iterator[backend.StreamEvent]:
        """Decode up to ``parallel`` requests together (continuous batching, shared prefixes)."""

        def pull() -> Work | backend.StreamFailed | None:
            request = next_request()
            if request is None:
                return None
            try:
                return self._work(request)
            except ModelError as exc:
                return backend.StreamFailed(request.key, str(exc))

        return self.engine.run(pull, cancel, max(1, parallel))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.engine.free()
        with contextlib.suppress(Exception):
            self.model.close()


def model_info(model: Any, path: Path, n_ctx: int, **more: Any) -> backend.ModelInfo:
    """What a loaded llama.cpp model (weights or vocabulary only) says about itself."""
    meta = model.metadata()
    return backend.ModelInfo(
        name=meta.get("general.name") or path.stem,
        path=path.resolve(),
        architecture=meta.get("general.architecture", "unknown"),
        chat_template=meta.get("tokenizer.chat_template"),
        bos_token=_token_text(model, model.token_bos()),
        eos_token=_token_text(model, model.token_eos()),
        n_ctx=n_ctx,
        n_ctx_train=model.n_ctx_train(),
        size_bytes=path.stat().st_size,
        adds_bos=bool(model.add_bos_token()),
        **more,
    )


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


def load_llama(
    path: Path, n_ctx: int = 4096, n_gpu_layers: int | None = None, n_threads: int | None = None
) -> LlamaCppBackend:
    """Load a model once per process; asking for another model frees the one held (one fits a GPU).

    ``n_threads`` (default :func:`default_threads`) applies to a model already loaded too.
    """
    key = (str(Path(path).resolve()), n_ctx, n_gpu_layers)
    with _cache_lock:
        loaded = _loaded.get(key)
        if loaded is not None:
            if n_threads is not None and n_threads != loaded.n_threads:
                loaded.set_threads(n_threads)
            return loaded
        for old in _loaded.values():
            old.close()
        _loaded.clear()
        made = LlamaCppBackend(Path(path), n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, n_threads=n_threads)
        _loaded[key] = made
        return made
