"""The shape-only GGUF writer: a tiny file llama.cpp loads and runs, and the 70B layout's size.

The GPU measurement of issue 7 relies on this script producing a file llama.cpp accepts at the full
Llama-2-70B shape; here the same code path is checked on a tiny shape, and the 70B layout is only
computed (38 GB is not written on CPU test machines).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from convogen_tui.core.making.backend import Request
from convogen_tui.core.making.check import seeds_for
from convogen_tui.core.making.experiment import SamplingSettings, load_experiment
from convogen_tui.core.making.pipeline import Pipeline
from convogen_tui.llm.embedded import embedded_model_path
from convogen_tui.llm.gguf_info import read_gguf_info
from convogen_tui.llm.llama_cpp import LlamaCppBackend

pytestmark = pytest.mark.llama  # runs the embedded model through llama.cpp

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "shape_gguf.py"
THROUGHPUT = SCRIPT.with_name("throughput.py")
# Llama-2's own tokenizer on the sample experiment's first seed with each of its 6 personas
# (llama2 prompt format): 319 318 320 321 315 314 tokens. Measured 2026-11-26 with Llama-2's
# 32,000-piece vocabulary (from belladoreai/llama-tokenizer-js) in a GGUF read by this llama.cpp.
LLAMA2_SAMPLE_TOKENS = 319 + 318 + 320 + 321 + 315 + 314
LAST_LINE = re.compile(r"pipeline/raw=\d+\.\d\d batched16/single=\d+\.\d\d batched16-decode/raw16=\d+\.\d\d")


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
        generation = backend.stream(Request(0, "Hello, world", 0, greedy))
        # zero weights: every logit is equal, so greedy repeats token 0, a visible word
        assert generation.text().split() == ["the"] * 4
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


@pytest.fixture(scope="module")
def tiny_file(shape_gguf, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("shape") / "tiny.gguf"
    shape_gguf.write_shape_gguf(path, shape_gguf.PRESETS["tiny"])
    return path


def test_shape_vocabulary_tokenizes_the_sample_prompt_like_llama(tiny_file: Path, sample: Path) -> None:
    """Word-sized pieces: the sample prompts are about as many tokens as for Llama-2 (not 4x)."""
    backend = LlamaCppBackend(tiny_file, n_ctx=4096)
    try:
        pipeline = Pipeline(load_experiment(sample), backend)
        jobs = pipeline.plan(seeds_for(pipeline.experiment).seeds, personas="all", seed=1).jobs[:6]
        counts = [backend.count_tokens(pipeline.generation_prompt(j.seed, j.persona)) for j in jobs]
        assert 0.7 * LLAMA2_SAMPLE_TOKENS <= sum(counts) <= 1.3 * LLAMA2_SAMPLE_TOKENS
        text = "Disinformation spreads faster than corrections, the towers"
        pieces = [backend.piece(t) for t in backend.tokenize(text)][1:]  # after <s>
        assert pieces == [
            b" Dis",
            b"information",
            b" spreads",
            b" faster",
            b" than",
            b" corrections",
            b",",
            b" the",
            b" towers",
        ]
        assert backend.piece(0) == b" the"  # what greedy picks when every logit is equal
    finally:
        backend.close()


def test_the_word_list_is_the_embedded_tokenizers_letters_in_merge_order(shape_gguf) -> None:
    listed = shape_gguf.english_pieces()
    assert len(listed) == 32000
    assert shape_gguf.pieces_from_gguf(embedded_model_path())[: len(listed)] == listed


def test_a_vocabulary_too_small_for_its_fixed_tokens_is_refused(shape_gguf, tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        shape_gguf.main([str(tmp_path / "z.gguf"), "--preset", "tiny", "--vocab", "300"])
    assert not (tmp_path / "z.gguf").exists()


def test_throughput_quick_runs_end_to_end_on_a_shape_file(tiny_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    command = [sys.executable, str(THROUGHPUT), "--quick", "--model", str(tiny_file)]
    command += ["--tokens", "16", "--repeat", "1", "--auto", "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert LAST_LINE.fullmatch(lines[-1]), lines[-1]
    assert any(line.startswith("parallel: 16 conversation(s) at once (auto:") for line in lines)
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures["setup"]["sizes"] == [1, 2, 4, 8, 16]
    assert set(figures["batched"]) == {"1", "2", "4", "8", "16"}
    assert figures["single"]["pipeline"]["prompt_tokens"] == figures["single"]["raw"]["prompt_tokens"] < 400
    assert figures["auto"]["parallel"] == 16 and figures["auto"]["agg_tps"] > 0
    printed = float(lines[-1].rsplit("batched16-decode/raw16=", 1)[1])
    assert abs(printed - figures["ratios"]["batched16-decode/raw16"]) <= 0.0051  # 2 places vs 3
