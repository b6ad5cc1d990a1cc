"""benchmarks/gpu_check.sh, the one command the GPU machine runs, checked here on a tiny shape file.

The GPU machine has Python with numpy and PyYAML, the wheels ../shared/gpu/prepare.sh carries and
llama-cpp-python's pure-Python bindings; nothing else (no textual, rich, httpx). So the script runs
here with only those packages importable: anything else it reached for would fail this test first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.llama  # runs llama.cpp

REPO = Path(__file__).resolve().parents[2]
# what the GPU machine's Python can import besides the standard library
GPU_MACHINE_PACKAGES = [
    "numpy", "numpy.libs", "yaml", "_yaml",  # the machine's own Python
    "pydantic", "pydantic_core", "annotated_types", "typing_inspection", "typing_extensions",
    "diskcache", "gguf", "jinja2", "markupsafe", "filelock",  # .device/whl (prepare.sh, EXTRA_WHEELS)
    "llama_cpp",  # .device/lsrc (bindings; the library is built there)
]  # fmt: skip


def restricted_python(tmp_path: Path) -> dict[str, str]:
    """An environment whose `python3` sees only the GPU machine's packages (and this checkout)."""
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    allowed = tmp_path / "site"
    allowed.mkdir()
    for name in GPU_MACHINE_PACKAGES:
        for found in [site / name, *site.glob(f"{name}.*py")]:
            if found.exists():
                (allowed / found.name).symlink_to(found)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')  # -S: no site-packages
    wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", PYTHONPATH=f"{allowed}:{REPO}", PYTHONNOUSERSITE="1")
    return env


def test_gpu_check_runs_with_only_what_the_gpu_machine_has(tmp_path: Path) -> None:
    env = restricted_python(tmp_path)
    blocked = subprocess.run(["python3", "-c", "import rich"], env=env, capture_output=True, text=True)
    assert blocked.returncode != 0  # the restriction is real

    logs = tmp_path / "logs"
    env.update(SHAPE="tiny", LOG_DIR=str(logs), TOKENS="16", MODEL=str(tmp_path / "tiny.gguf"))
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    log = (logs / "gpu_check.log").read_text(encoding="utf-8")
    assert "preflight: python" in log and "GPU offload no" in log
    assert "pipeline/raw=" in log and "batched16-decode/raw16=" in log
    assert "parallel: 16 conversation(s) at once (auto:" in log
    assert "throughput.py exit 0" in log
    figures = json.loads((logs / "throughput.json").read_text(encoding="utf-8"))
    assert {"setup", "single", "batched", "ratios", "auto"} <= set(figures)
    assert not (tmp_path / "tiny.gguf").exists()  # the shape file is removed afterwards
