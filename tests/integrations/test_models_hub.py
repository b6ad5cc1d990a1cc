"""`convogen models pull` against a loopback hub (tests/fakehub.py), pointed at with HF_ENDPOINT."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from convogen_tui.core.errors import ModelError
from convogen_tui.integrations.hub import choose_remote, list_repo_ggufs, pull, quant_from_name
from convogen_tui.llm.embedded import EMBEDDED_FILE, embedded_model_path
from convogen_tui.llm.gguf_info import read_gguf_info
from convogen_tui.llm.resolve import resolve_model
from tests.fakehub import FakeHub, Repo, start
from tests.ggufs import write_gguf

pytestmark = pytest.mark.process  # real processes or loopback servers, and their waits

ROOT = Path(__file__).resolve().parents[2]
REPO = "acme/tiny-GGUF"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    src = tmp_path_factory.mktemp("served")
    split = write_gguf(src / "toy-F32.gguf", split_max_tensors=2)
    half = src / "broken.Q8_0.gguf"
    half.write_bytes(split[0].read_bytes()[:-100])
    hub = FakeHub()
    (src / "README.md").write_text("# tiny\n")
    files = {EMBEDDED_FILE: embedded_model_path(), "README.md": src / "README.md"}
    files.update({f"split/{p.name}": p for p in split})
    hub.repos[REPO] = Repo(files=files)
    hub.repos["acme/broken-GGUF"] = Repo(files={half.name: half})
    hub.repos["acme/private-GGUF"] = Repo(files={f"toy-{p.name}": p for p in split}, token="s3cret")
    (src / "config.json").write_text("{}")
    hub.repos["meta-llama/Llama-2-70b-chat-hf"] = Repo(
        files={"config.json": src / "config.json", "model-00001-of-00015.safetensors": half}
    )
    server = start(hub)
    yield hub
    server.shutdown()


@pytest.fixture
def hub(served: FakeHub, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    monkeypatch.setenv("HF_ENDPOINT", served.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("CONVOGEN_MODELS", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    served.log.clear()
    served.cut_once.clear()
    served.fail_gets = 0
    return served


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "datasets").mkdir()
    return tmp_path


def cli(project: Path, hub: FakeHub, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The real CLI in a fresh process, so huggingface_hub reads HF_ENDPOINT at import."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_ENDPOINT": hub.url, **env}
    if "HF_TOKEN" not in env:
        full_env.pop("HF_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "convogen_tui", "--root", str(project / "datasets"), *args],
        cwd=project,
        capture_output=True,
        text=True,
        env=full_env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def test_lists_repo_ggufs_with_sizes_and_quants(hub: FakeHub) -> None:
    models = {m.filename: m for m in list_repo_ggufs(REPO)}
    assert set(models) == {EMBEDDED_FILE, "split/toy-F32-00001-of-00003.gguf"}
    assert models[EMBEDDED_FILE].size == embedded_model_path().stat().st_size
    assert models[EMBEDDED_FILE].quantization == "Q4_1"
    split = models["split/toy-F32-00001-of-00003.gguf"]
    assert len(split.parts) == 3 and split.quantization == "F32"
    assert quant_from_name("llama-2-70b-chat.Q4_K_M.gguf") == "Q4_K_M"
    assert quant_from_name("model-iq2_xxs-00001-of-00002.gguf") == "IQ2_XXS"
    assert choose_remote(list(models.values()), "q4_1", REPO).filename == EMBEDDED_FILE


def test_pull_then_info_and_list_by_reference(hub: FakeHub, project: Path) -> None:
    result = cli(project, hub, "models", "pull", f"{REPO}:{EMBEDDED_FILE}")
    assert result.returncode == 0, result.stderr
    dest = project / "models" / "acme__tiny-GGUF" / EMBEDDED_FILE
    assert sha256(dest) == sha256(embedded_model_path())
    assert f"--model {REPO}:{EMBEDDED_FILE}" in result.stdout
    assert not list((project / "models" / ".downloads").rglob("*.part"))
    info = cli(project, hub, "models", "info", f"{REPO}:{EMBEDDED_FILE}")
    assert info.returncode == 0, info.stderr
    assert "architecture      llama" in info.stdout and "134.5M" in info.stdout
    listed = cli(project, hub, "models", "list")
    assert f"{REPO}:{EMBEDDED_FILE}" in listed.stdout
    # a second pull finds the file in place and downloads nothing
    hub.log.clear()
    again = cli(project, hub, "models", "pull", f"{REPO}:{EMBEDDED_FILE}")
    assert again.returncode == 0 and hub.gets(EMBEDDED_FILE) == []


def test_pull_split_downloads_every_part(hub: FakeHub, project: Path) -> None:
    models = list_repo_ggufs(REPO)
    model = choose_remote(models, "split/toy-F32-00002-of-00003.gguf", REPO)
    first = pull(REPO, model, project / "models")
    assert first.name == "toy-F32-00001-of-00003.gguf"
    assert len(list(first.parent.glob("toy-F32-*-of-00003.gguf"))) == 3
    info = read_gguf_info(first)
    assert info.split_count == 3 and info.parameter_count == 22784
    ref = f"{REPO}:split/toy-F32-00001-of-00003.gguf"
    assert resolve_model(ref, project_root=project) == first.resolve()


def test_pull_without_file_lists_and_exits_2_off_a_tty(hub: FakeHub, project: Path) -> None:
    result = cli(project, hub, "models", "pull", REPO)
    assert result.returncode == 2
    assert EMBEDDED_FILE in result.stdout and "93.8 MiB" in result.stdout
    assert "Q4_1" in result.stdout and "(3 parts)" in result.stdout
    assert f"convogen models pull {REPO}:FILE.gguf" in result.stderr
    assert not (project / "models").exists()


def test_cut_connection_is_resumed_in_the_same_pull(hub: FakeHub, project: Path) -> None:
    hub.cut_once[EMBEDDED_FILE] = 30_000_000
    model = choose_remote(list_repo_ggufs(REPO), EMBEDDED_FILE, REPO)
    path = pull(REPO, model, project / "models", retry_wait=0.01)
    assert hub.gets(EMBEDDED_FILE) == [None, "bytes=30000000-"]
    assert sha256(path) == sha256(embedded_model_path())


def test_interrupted_pull_resumes_on_the_next_run(hub: FakeHub, project: Path) -> None:
    hub.cut_once[EMBEDDED_FILE] = 40_000_000
    hub.fail_gets = 0
    model = choose_remote(list_repo_ggufs(REPO), EMBEDDED_FILE, REPO)
    models_dir = project / "models"

    def fail_after_cut(name: str, have: int, total: int) -> None:
        if have >= 20_000_000:
            hub.fail_gets = 10  # the hub goes away after the cut

    with pytest.raises(ModelError, match=r"interrupted at 0\.04 of 0\.10 GB") as err:
        pull(REPO, model, models_dir, progress=fail_after_cut, retries=1, retry_wait=0.01)
    assert "run the same pull again to resume" in str(err.value)
    assert not list(models_dir.rglob("*.gguf"))  # nothing half-written among the models
    (partial,) = (models_dir / ".downloads").rglob("*.part")
    assert partial.stat().st_size == 40_000_000

    hub.fail_gets = 0
    hub.log.clear()
    result = cli(project, hub, "models", "pull", f"{REPO}:{EMBEDDED_FILE}")
    assert result.returncode == 0, result.stderr
    assert hub.gets(EMBEDDED_FILE) == ["bytes=40000000-"]
    assert sha256(models_dir / "acme__tiny-GGUF" / EMBEDDED_FILE) == sha256(embedded_model_path())
    assert not partial.exists()


def test_private_repo_401_then_hf_token(hub: FakeHub, project: Path) -> None:
    result = cli(project, hub, "models", "pull", "acme/private-GGUF")
    assert result.returncode == 1
    assert "401" in result.stderr and "HF_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    ok = cli(
        project,
        hub,
        "models",
        "pull",
        "acme/private-GGUF:toy-toy-F32-00001-of-00003.gguf",
        HF_TOKEN="s3cret",
    )
    assert ok.returncode == 0, ok.stderr
    assert len(list((project / "models" / "acme__private-GGUF").glob("*.gguf"))) == 3


def test_404_repo_file_and_revision(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "anything")  # signed in: the hub answers 404, not 401
    with pytest.raises(ModelError, match=r"repository acme/nothing not found .* \(404\)"):
        list_repo_ggufs("acme/nothing")
    with pytest.raises(ModelError, match="revision 'v9' not found"):
        list_repo_ggufs(REPO, revision="v9")
    with pytest.raises(ModelError, match=r"has no GGUF file 'missing\.gguf'"):
        choose_remote(list_repo_ggufs(REPO), "missing.gguf", REPO)


def test_transformers_repo_points_to_gguf_conversions(hub: FakeHub, project: Path) -> None:
    result = cli(project, hub, "models", "pull", "meta-llama/Llama-2-70b-chat-hf")
    assert result.returncode == 1
    assert "has no GGUF file (a transformers checkpoint)" in result.stderr
    assert "TheBloke/Llama-2-70B-Chat-GGUF" in result.stderr


def test_a_broken_download_never_lands_in_models(hub: FakeHub, project: Path) -> None:
    model = choose_remote(list_repo_ggufs("acme/broken-GGUF"), "Q8_0", "acme/broken-GGUF")
    with pytest.raises(ModelError, match="truncated GGUF"):
        pull("acme/broken-GGUF", model, project / "models")
    assert not list((project / "models").rglob("*.gguf"))
    assert not list((project / "models").rglob("*.part"))
