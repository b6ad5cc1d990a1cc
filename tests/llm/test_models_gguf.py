"""`convogen models list|info` and the GGUF header reader, on real GGUF files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from convogen_tui.core.errors import ModelError
from convogen_tui.llm.catalog import check_fit, list_models, model_details
from convogen_tui.llm.embedded import embedded_model_path
from convogen_tui.llm.gguf_info import GGUFInfo, estimate_memory, read_gguf_info
from convogen_tui.llm.gpu import GPU
from convogen_tui.llm.resolve import resolve_model
from tests.ggufs import write_gguf

ROOT = Path(__file__).resolve().parents[2]
GIB = 2**30


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convogen_tui", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=60,
    )


def test_embedded_model_header() -> None:
    import gguf

    path = embedded_model_path()
    info = read_gguf_info(path)
    assert info.architecture == "llama"
    assert info.quantization == "Q4_1"
    assert (info.context_length, info.n_layers, info.n_heads, info.n_kv_heads) == (8192, 30, 9, 3)
    assert info.embedding_length == 576 and info.head_dim == 64 and info.vocab_size == 49152
    assert info.chat_template_family == "chatml"
    assert info.file_size == path.stat().st_size
    # the gguf package's own reader agrees on the parameter count
    reference = sum(int(t.n_elements) for t in gguf.GGUFReader(path).tensors)
    assert info.parameter_count == reference
    assert 130e6 < info.parameter_count < 140e6


def test_info_cli_prints_architecture_and_parameters(tmp_path: Path) -> None:
    result = cli("models", "info", "default", "--ctx", "2048", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "architecture      llama" in out
    assert "134.5M (134,515,008)" in out
    assert "Q4_1" in out and "chatml" in out
    assert "KV 45.0 MiB at ctx 2048" in out  # 2 * 30 layers * 2048 * 3 heads * 64 * 2 bytes
    assert "GPU fit" in out


def test_split_gguf_counts_all_parts(tmp_path: Path) -> None:
    parts = write_gguf(tmp_path / "toy.gguf", split_max_tensors=2)
    assert len(parts) == 3
    for part in parts:  # any part names the whole model
        info = read_gguf_info(part)
        assert info.split_count == 3 and info.parts[0] == parts[0].resolve()
        assert info.parameter_count == 100 * 64 + 4 * 64 * 64
        assert info.file_size == sum(p.stat().st_size for p in parts)
        assert info.chat_template_family == "llama2"
    parts[2].unlink()
    with pytest.raises(ModelError, match="missing 1 of 3 parts"):
        read_gguf_info(parts[0])


def test_not_a_gguf(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_text('{"architectures": ["LlamaForCausalLM"]}' * 10)
    with pytest.raises(ModelError, match="not a GGUF file"):
        read_gguf_info(fake)
    result = cli("models", "info", str(fake), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "not a GGUF file" in result.stderr
    assert "Traceback" not in result.stderr


def test_truncated_gguf(tmp_path: Path) -> None:
    data = embedded_model_path().read_bytes()
    half = tmp_path / "half.gguf"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated GGUF") as err:
        read_gguf_info(half)
    assert "pull it again" in str(err.value)
    header_cut = tmp_path / "cut.gguf"
    header_cut.write_bytes(data[:100_000])  # inside the vocabulary
    with pytest.raises(ModelError, match="header is cut off"):
        read_gguf_info(header_cut)


def test_unknown_architecture_warns_but_shows_the_rest(tmp_path: Path) -> None:
    (path,) = write_gguf(tmp_path / "odd.gguf", arch="frobnicator")
    info = read_gguf_info(path)
    assert info.architecture == "frobnicator" and info.parameter_count == 22784
    assert any("unknown architecture 'frobnicator'" in w for w in info.warnings)
    result = cli("models", "info", str(path), cwd=tmp_path)
    assert result.returncode == 0
    assert "frobnicator" in result.stdout and "warning: unknown architecture" in result.stderr


def test_list_finds_models_dirs_and_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "proj"
    (project / "datasets").mkdir(parents=True)
    models = project / "models"
    pulled = models / "acme__toy-GGUF"
    pulled.mkdir(parents=True)
    write_gguf(pulled / "toy.gguf")
    write_gguf(pulled / "big.gguf", split_max_tensors=2)
    write_gguf(models / "loose.gguf")
    (models / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    (models / ".downloads").mkdir()
    (models / ".downloads" / "half.gguf").write_bytes(b"GGUF")  # partials are never listed
    cache = tmp_path / "hfcache"
    snap = cache / "models--someone--cached-GGUF" / "snapshots" / ("b" * 40)
    snap.mkdir(parents=True)
    write_gguf(snap / "c.gguf")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("CONVOGEN_MODELS", raising=False)
    monkeypatch.chdir(tmp_path)

    found = {m.ref: m for m in list_models(project)}
    assert found["default"].source == "embedded"
    assert found["acme/toy-GGUF:toy.gguf"].info.parameter_count == 22784
    assert found["acme/toy-GGUF:big-00001-of-00003.gguf"].info.split_count == 3
    assert not any("00002" in ref for ref in found)
    assert found[str((models / "loose.gguf").resolve())].source == "models"
    assert "truncated" in (found[str((models / "broken.gguf").resolve())].error or "")
    assert found["someone/cached-GGUF:c.gguf"].source == "hf-cache"
    assert not any(".downloads" in ref for ref in found)
    # what is listed resolves by its ref
    assert resolve_model("acme/toy-GGUF:toy.gguf", project_root=project) == (pulled / "toy.gguf")

    result = cli(
        "--root",
        str(project / "datasets"),
        "models",
        "list",
        cwd=tmp_path,
        env={"HF_HUB_CACHE": str(cache)},
    )
    assert result.returncode == 0, result.stderr
    assert "acme/toy-GGUF:big-00001-of-00003.gguf" in result.stdout
    assert "(3 parts)" in result.stdout and "llama2" in result.stdout
    assert "broken.gguf" in result.stderr


def llama2_70b_q4km() -> GGUFInfo:
    """The header facts of TheBloke's llama-2-70b-chat.Q4_K_M.gguf (41.4 GB)."""
    return GGUFInfo(
        path=Path("llama-2-70b-chat.Q4_K_M.gguf"),
        parts=[],
        file_size=41_423_048_448,
        gguf_version=2,
        architecture="llama",
        parameter_count=68_976_648_192,
        quantization="Q4_K_M",
        tensor_types=[],
        weights_bytes=41_422_000_000,
        context_length=4096,
        n_layers=80,
        n_heads=64,
        n_kv_heads=8,
        embedding_length=8192,
        feed_forward_length=28672,
        head_dim=128,
        vocab_size=32000,
        chat_template_family="llama2 (by name, no template)",
    )


def test_memory_estimate_and_fit() -> None:
    info = llama2_70b_q4km()
    est = estimate_memory(info, 4096)
    assert est.kv_cache == 2 * 80 * 4096 * 8 * 128 * 2  # 1.25 GiB of f16 K and V
    assert 0.4 * GIB < est.scratch < 2 * GIB
    a100 = [GPU(index=0, name="NVIDIA A100-SXM4-80GB", total=80 * GIB, free=79 * GIB)]
    fit = check_fit(info, est, a100)
    assert fit.fits is True and "fits NVIDIA A100-SXM4-80GB" in fit.message
    small = [GPU(index=0, name="RTX 4090", total=24 * GIB, free=23 * GIB)]
    fit = check_fit(info, est, small)
    assert fit.fits is False and 30 < (fit.layers_that_fit or 0) < 50
    assert "n_gpu_layers" in fit.message
    assert check_fit(info, est, []).fits is None
    assert "no GPU found" in check_fit(info, est, []).message


def test_model_details_for_the_app() -> None:
    details = model_details(embedded_model_path(), 1024, gpus=[])
    assert details.estimate.n_ctx == 1024
    assert details.info.architecture == "llama"
    assert details.fit.fits is None


def test_missing_pulled_model_says_how_to_pull(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=re.escape("convogen models pull acme/x-GGUF:x.Q4_K_M.gguf")):
        resolve_model("acme/x-GGUF:x.Q4_K_M.gguf", project_root=tmp_path)
