"""The models a user has: the embedded default, ``models/`` folders, the Hugging Face cache.

Both the CLI (``convogen models``) and the app's models screen call ``list_models`` and
``model_details``; neither prints, so a bad file shows up as a row with an error, not a crash.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pydantic import BaseModel

from convogen_tui.core.errors import ConvogenError
from convogen_tui.llm.embedded import embedded_model_path
from convogen_tui.llm.gguf_info import (
    SPLIT_NAME,
    GGUFInfo,
    MemoryEstimate,
    estimate_memory,
    format_bytes,
    read_gguf_info,
)
from convogen_tui.llm.gpu import GPU, list_gpus
from convogen_tui.llm.resolve import models_dirs

SEP = "__"  # models/<owner>__<repo>/<file>: how a pulled file keeps its hub name


class ModelSummary(BaseModel):
    """One model file as the list shows it: how to name it, where it is, what it is."""

    ref: str  # what --model / "llm" accepts
    path: Path
    source: str  # "embedded", "models", "hf-cache"
    info: GGUFInfo | None = None
    error: str | None = None


class FitReport(BaseModel):
    """Whether a full offload fits the GPU found here."""

    fits: bool | None  # None: no GPU to check against
    message: str
    layers_that_fit: int | None = None


class ModelDetails(BaseModel):
    info: GGUFInfo
    estimate: MemoryEstimate
    gpus: list[GPU]
    fit: FitReport


def list_models(project_root: Path | None = None, hf_cache: bool = True) -> list[ModelSummary]:
    """Every GGUF model found locally (first part only for split files), embedded default first."""
    found: list[tuple[str, Path, str]] = []
    with contextlib.suppress(ConvogenError):  # not installed: nothing to list
        found.append(("default", embedded_model_path(), "embedded"))
    for folder in models_dirs(project_root):
        if folder.is_dir():
            found += [(ref, path, "models") for ref, path in _scan_models_dir(folder)]
    if hf_cache:
        found += [(ref, path, "hf-cache") for ref, path in _scan_hf_cache()]
    seen: set[Path] = set()
    summaries = []
    for ref, path, source in found:
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        summary = ModelSummary(ref=ref, path=path, source=source)
        try:
            summary.info = read_gguf_info(path)
        except ConvogenError as exc:
            summary.error = _without_path(exc)
        except Exception as exc:  # one bad file must never hide the others
            summary.error = f"{type(exc).__name__}: {exc}"
        summaries.append(summary)
    return summaries


def _without_path(exc: ConvogenError) -> str:
    """The error's message and hint: the row already names the file."""
    if not exc.problems:
        return str(exc)
    problem = exc.problems[0]
    return problem.message + (f" ({problem.hint})" if problem.hint else "")


def _first_parts(files: list[Path]) -> list[Path]:
    out = []
    for path in sorted(files):
        match = SPLIT_NAME.match(path.name)
        if match is None or int(match["no"]) == 1:
            out.append(path)
    return out


def _scan_models_dir(folder: Path) -> list[tuple[str, Path]]:
    """``models/*.gguf`` (named by path) and ``models/<owner>__<repo>/**.gguf`` (by hub ref)."""
    rows: list[tuple[str, Path]] = []
    for path in _first_parts([p for p in folder.glob("*.gguf") if p.is_file()]):
        rows.append((str(path), path))
    for sub in sorted(folder.iterdir()):
        if not sub.is_dir() or sub.name.startswith("."):
            continue
        files = [
            p
            for p in sub.rglob("*.gguf")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(sub).parts)
        ]
        for path in _first_parts(files):
            rel = path.relative_to(sub).as_posix()
            ref = f"{sub.name.replace(SEP, '/', 1)}:{rel}" if SEP in sub.name else str(path)
            rows.append((ref, path))
    return rows


def _scan_hf_cache() -> list[tuple[str, Path]]:
    """GGUF files in the Hugging Face cache (``models--owner--repo/snapshots/<sha>/...``)."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return []
    cache = Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)
    rows: list[tuple[str, Path]] = []
    if not cache.is_dir():
        return rows
    for repo_dir in sorted(cache.glob("models--*")):
        repo_id = repo_dir.name.removeprefix("models--").replace("--", "/", 1)
        snapshots = repo_dir / "snapshots"
        if not snapshots.is_dir():
            continue
        files = [p for p in snapshots.rglob("*.gguf") if p.is_file()]
        for path in _first_parts(files):
            rel = path.relative_to(snapshots).parts[1:]
            rows.append((f"{repo_id}:{'/'.join(rel)}", path))
    return rows


def model_details(path: Path, n_ctx: int | None = None, gpus: list[GPU] | None = None) -> ModelDetails:
    """Header facts, the full-offload memory estimate, and whether it fits this machine's GPU."""
    info = read_gguf_info(path)
    ctx = n_ctx or min(info.context_length or 4096, 4096)
    estimate = estimate_memory(info, ctx)
    gpus = list_gpus() if gpus is None else gpus
    return ModelDetails(info=info, estimate=estimate, gpus=gpus, fit=check_fit(info, estimate, gpus))


def check_fit(info: GGUFInfo, estimate: MemoryEstimate, gpus: list[GPU]) -> FitReport:
    """Compare the estimate with the GPUs' memory; llama.cpp spreads layers over all of them."""
    need = estimate.total
    if not gpus:
        return FitReport(
            fits=None,
            message=f"needs about {format_bytes(need)}; no GPU found "
            "(nvidia-smi not available), so the model runs on CPU",
        )
    total = sum(g.total for g in gpus)
    free = sum(g.free for g in gpus)
    label = gpus[0].name if len(gpus) == 1 else f"{len(gpus)} GPUs ({gpus[0].name}...)"
    size = f"{label}, {format_bytes(total)}"
    if need <= free:
        return FitReport(fits=True, message=f"fits {size} ({format_bytes(free)} free)")
    if need <= total:
        return FitReport(
            fits=True,
            message=f"fits {size} once other programs free it (only {format_bytes(free)} free now)",
        )
    layers = info.n_layers or 0
    per_layer = info.weights_bytes / layers if layers else 0
    room = total - estimate.kv_cache - estimate.scratch
    fit_layers = max(0, min(layers, int(room // per_layer))) if per_layer else 0
    return FitReport(
        fits=False,
        layers_that_fit=fit_layers,
        message=f"does not fit {size}: short by {format_bytes(need - total)}; about {fit_layers} "
        f"of {layers} layers fit (set n_gpu_layers), or use a smaller quantization "
        "or context",
    )
