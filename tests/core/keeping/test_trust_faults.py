"""Faults are messages: a full disk (a small tmpfs), a read-only mount, permission denied, a folder
that vanishes mid-run. Each ends with one line naming the folder and what to do, a non-zero exit,
no temporary file and nothing half-written; `check` and the start of `generate` find what they can
before a token is spent.

Mounting a tmpfs needs root (CAP_SYS_ADMIN); where the tests cannot mount one they skip, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from convogen_tui.core.errors import StorageError
from convogen_tui.core.making.check import seeds_for
from convogen_tui.core.making.experiment import load_experiment
from convogen_tui.core.making.pipeline import Pipeline
from tests.cli.test_trust_runs import Proc, wait_until
from tests.conftest import REPO
from tests.fake_openai import FakeOpenAI, Reply, running
from tests.scripted import Script, ScriptedBackend

pytestmark = pytest.mark.process  # real processes or loopback servers, and their waits

ENV = {**os.environ, "PYTHONPATH": str(REPO)}
LIMIT_S = 60.0


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """mount(size) -> a fresh tmpfs of that size (``"16m"``), unmounted after the test."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def copy_datasets(target: Path) -> Path:
    shutil.copytree(
        REPO / "datasets",
        target / "datasets",
        ignore=shutil.ignore_patterns("conversations", "restyled-conversations", "trash", ".convogen"),
    )
    return target / "datasets"


def generate(datasets: Path, url: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "convogen_tui", "generate", "sample", "--root", str(datasets),
        "--backend", "openai", "--base-url", url, "--concurrency", "1", "--seed", "3", *extra,
    ]  # fmt: skip


def fill(folder: Path) -> Path:
    """Write zeros until the disk holding ``folder`` is full; the filler file, to free it again."""
    filler = folder / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for block in (2**20, 2**16, 2**12, 2**9, 1):
            try:
                while True:
                    os.write(fd, b"\0" * block)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def convogen_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("convogen:")]


def no_leftovers(root: Path) -> None:
    assert not [p for p in root.rglob("*.tmp")]
    for path in root.rglob("*conversations/*.json"):
        json.loads(path.read_text())  # every file is whole


def test_disk_full_mid_run_is_one_line_nothing_half_written_and_resumable(tmpfs, tmp_path: Path) -> None:
    disk = tmpfs("80m")
    datasets = copy_datasets(disk)
    expt = datasets / "inst-templates" / "sample"
    gate = threading.Event()
    server = FakeOpenAI()
    server.respond = lambda seen: Reply(hold=gate if len(server.completions()) == 3 else None)
    with running(server):
        args = generate(datasets, server.url, "--limit", "2")
        proc = Proc(args)
        try:
            wait_until(server.holding.is_set, proc)  # first pair saved, second conversation streaming
            filler = fill(disk)
            gate.set()
            assert proc.finish() == 1
        finally:
            gate.set()
            proc.kill()
        [line] = convogen_lines("".join(proc.err))
        assert f"{expt / 'conversations'}: cannot write in this folder: the disk is full" in line
        assert "free some space, then run the same command again" in line and "Traceback" not in line
        no_leftovers(disk)
        assert len(list((expt / "conversations").glob("*.json"))) == 1
        assert len(server.completions()) == 3  # stopped at once: no more tokens spent

        filler.unlink()
        server.respond = lambda seen: Reply()
        done = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=LIMIT_S)
    assert done.returncode == 0, done.stderr
    assert len(list((expt / "conversations").glob("*.json"))) == 3  # the first pair, then 2 new
    assert len(list((expt / "restyled-conversations").glob("*.json"))) == 3
    no_leftovers(disk)


def refused_before_any_token(datasets: Path) -> str:
    """`convogen generate --limit 1` against a loopback server, which must fail before it asks the
    server for any token: its one error line."""
    server = FakeOpenAI()
    with running(server):
        done = subprocess.run(
            generate(datasets, server.url, "--limit", "1"), env=ENV, capture_output=True, text=True
        )
    assert done.returncode == 1
    assert server.completions() == []
    [line] = convogen_lines(done.stderr)
    return line


def test_a_nearly_full_disk_is_refused_before_any_token(tmpfs, cli) -> None:
    disk = tmpfs("16m")
    datasets = copy_datasets(disk)
    line = refused_before_any_token(datasets)
    assert "MiB free on this disk (a run needs at least 64 MiB to start)" in line
    code, out, _ = cli("check", "sample", "--root", datasets)
    assert code == 1 and "MiB free on this disk" in out


def test_a_read_only_folder_is_refused_before_any_token_and_still_readable(tmpfs, cli) -> None:
    disk = tmpfs("32m")
    datasets = copy_datasets(disk)
    expt = datasets / "inst-templates" / "sample"
    (expt / "conversations").mkdir()
    (expt / "conversations" / "old.json").write_text(
        json.dumps(
            {
                "tweet_id": "1",
                "tweet": "t",
                "conv": "SocBot: a\nUser: b",
                "motivation": "m",
                "disposition": "d",
            }
        )
    )
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    line = refused_before_any_token(datasets)
    assert f"{expt}: cannot write in this folder: it is on a read-only file system" in line
    assert "copy the experiment to a writable folder" in line
    code, out, _ = cli("check", "sample", "--root", datasets)
    assert code == 1 and "read-only file system" in out
    code, out, _ = cli("show", "sample", "--root", datasets)  # reading still works
    assert code == 0 and "1 conversation(s)" in out


def test_permission_denied_is_one_line_before_any_token(sample: Path, datasets: Path, cli) -> None:
    (sample / "conversations").mkdir()
    (sample / "conversations").chmod(0o555)
    # root ignores permissions: run as root without the capabilities that override them
    drop = "-dac_override,-dac_read_search,-fowner"
    wrap = ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}"] if os.geteuid() == 0 else []
    if wrap and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make a folder unwritable")
    server = FakeOpenAI()
    try:
        with running(server):
            done = subprocess.run(
                [*wrap, *generate(datasets, server.url, "--limit", "1")],
                env=ENV,
                capture_output=True,
                text=True,
            )
    finally:
        (sample / "conversations").chmod(0o755)
    assert done.returncode == 1, (done.stdout, done.stderr)
    [line] = convogen_lines(done.stderr)
    assert f"{sample / 'conversations'}: cannot write in this folder: permission denied" in line
    assert "chmod" in line and server.completions() == []


def test_an_experiment_folder_vanishing_mid_run_is_a_clear_error(sample: Path, tmp_path: Path) -> None:
    gate = threading.Event()
    backend = ScriptedBackend([Script(hold_after=2, gate=gate)])
    experiment = load_experiment(sample)
    pipeline = Pipeline(experiment, backend)
    plan = pipeline.plan(seeds_for(experiment).seeds, limit=1, seed=1)
    moved = tmp_path / "moved-away"
    with pytest.raises(StorageError) as info:
        for event in pipeline.run(plan.jobs):
            if type(event).__name__ == "TokenChunk" and not gate.is_set():
                sample.rename(moved)  # someone moves the experiment while it runs
                gate.set()
    assert str(info.value).startswith(
        f"{sample / 'conversations'}: cannot write in this folder: it no longer exists"
    )
    assert not sample.exists()  # not re-created empty
    assert not list(moved.rglob("*.tmp"))


async def test_the_app_says_why_it_cannot_save_on_a_read_only_folder(tmpfs) -> None:
    from textual.widgets import TextArea

    from convogen_tui.tui.app import ConvogenApp
    from convogen_tui.tui.screens.workspace import ExperimentScreen
    from tests.tui_helpers import wait_for

    disk = tmpfs("32m")
    datasets = copy_datasets(disk)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    app = ConvogenApp(datasets, "sample", load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen))
        await pilot.press("f2")
        editor = app.screen.query_one("#setup-editor", TextArea)
        editor.focus()
        original = editor.text
        editor.insert(" ")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: any("read-only" in n.message for n in app._notifications))
        assert isinstance(app.screen, ExperimentScreen)  # still running, the edit still there
        assert editor.text == " " + original  # the unsaved edit is kept
