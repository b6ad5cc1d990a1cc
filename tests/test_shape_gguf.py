"""The shape-only GGUF writer: a tiny file llama.cpp loads and runs, and the 70B layout's size.

The GPU measurement of issue 7 relies on this script producing a file llama.cpp accepts at the full
Llama-2-70B shape; here the same code path is checked on a tiny shape, and the 70B layout is only
computed (38 GB is not written on CPU test machines).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from convogen_tui.core.experiment import SamplingSettings
from convogen_tui.llm.gguf_info import read_gguf_info
from convogen_tui.llm.llama_cpp import LlamaCppBackend

pytestmark = pytest.mark.llama  # runs the embedded model through llama.cpp

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "shape_gguf.py"


@pytest.fixture(scope="module")
def shape_gguf():
    spec = importlib.util.spec_from_file_location("shape_gguf", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["shape_gguf"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("shape_gguf", None)


@pytest.mark.parametrize("dense", [False, True])
def test_tiny_file_loads_and_decodes(shape_gguf, tmp_path: Path, dense: bool) -> None:
    shape = shape_gguf.PRESETS["tiny"]
    path = tmp_path / "tiny.gguf"
    out = shape_gguf.write_shape_gguf(path, shape, dense=dense)
    assert path.stat().st_size == out.file_size == shape_gguf.layout(shape).file_size

    info = read_gguf_info(path)
    assert info.architecture == "llama"
    assert (info.n_layers, info.embedding_length) == (shape.layers, shape.embd)
    assert (info.n_heads, info.n_kv_heads, info.feed_forward_length) == (
        shape.heads,
        shape.kv_heads,
        shape.ffn,
    )
    assert (info.vocab_size, info.context_length) == (shape.vocab, shape.ctx)
    assert info.quantization == "Q4_0"
    assert info.parameter_count == out.parameter_count
    assert {t.type for t in info.tensor_types} == {"Q4_0", "F32"}

    backend = LlamaCppBackend(path, n_ctx=256)
    try:
        assert backend.info.architecture == "llama" and backend.info.n_layers == shape.layers + 1
        greedy = SamplingSettings(temperature=0, max_tokens=4)
        generation = backend.stream("Hello, world", greedy, seed=0)
        generation.text()  # zero weights: every logit is equal, so greedy repeats one token
        assert generation.stats.completion_tokens == 4 and generation.stats.finish_reason == "length"
    finally:
        backend.close()


def test_llama2_70b_layout_without_writing(shape_gguf) -> None:
    shape = shape_gguf.PRESETS["llama2-70b"]
    out = shape_gguf.layout(shape)
    assert 36e9 < out.file_size < 40e9  # a Q4_0 conversion of Llama-2-70B is ~38.9 GB
    assert 68.5e9 < out.parameter_count < 69.5e9
    assert len(out.tensors) == 3 + 9 * 80
    assert out.header_bytes % out.alignment == 0
    by_name = {t.name: t for t in out.tensors}
    assert by_name["blk.0.attn_k.weight"].shape == (8 * 128, 8192)  # GQA: 8 KV heads of 128
    assert by_name["blk.79.ffn_down.weight"].shape == (8192, 28672)


def test_cli_dry_run_and_bad_shape(shape_gguf, tmp_path: Path, capsys) -> None:
    assert shape_gguf.main([str(tmp_path / "x.gguf"), "--dry-run", "--layers", "4"]) == 0
    printed = capsys.readouterr().out
    assert "would write" in printed and "4 layers x 8192 embd" in printed
    assert not (tmp_path / "x.gguf").exists()
    with pytest.raises(SystemExit):
        shape_gguf.main([str(tmp_path / "y.gguf"), "--preset", "tiny", "--embd", "100"])
