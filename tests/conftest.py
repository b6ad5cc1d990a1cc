"""Shared fixtures: a private copy of the sample datasets, and the embedded model loaded once."""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that drives the Textual app (async Pilot tests, snapshots) is marked ``app``:
    a second or more each, so the quick set (README) leaves them out."""
    for item in items:
        function = getattr(item, "function", None)
        if inspect.iscoroutinefunction(function) or "snap_compare" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.app)


@pytest.fixture
def datasets(tmp_path: Path) -> Path:
    """A copy of the repo's datasets/ (sample experiment and seeds) that tests may write into."""
    target = tmp_path / "datasets"
    shutil.copytree(
        REPO / "datasets",
        target,
        ignore=shutil.ignore_patterns("conversations", "restyled-conversations", "trash", ".convogen"),
    )
    return target


@pytest.fixture
def sample(datasets: Path) -> Path:
    return datasets / "inst-templates" / "sample"


@pytest.fixture
def generate_args(datasets: Path):
    """`convogen generate sample --root DATASETS` with OPTIONS written as on a command line."""

    def args(options: str) -> tuple[str | Path, ...]:
        return ("generate", "sample", "--root", datasets, *options.split())

    return args


@pytest.fixture
def embedded_backend():
    """The embedded SmolLM2 model through llama.cpp, loaded once per process (``load_llama`` keeps it).

    Asked for again in each test: a test that loads the model with another context frees the one
    held, so a backend kept from an earlier test would point at freed memory."""
    from convogen_tui.llm.embedded import embedded_model_path
    from convogen_tui.llm.llama_cpp import load_llama

    return load_llama(embedded_model_path(), n_ctx=4096)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run `convogen ARGS` in-process (the model stays loaded); returns (code, stdout, stderr)."""
    from convogen_tui.cli.main import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
