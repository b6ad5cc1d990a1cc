"""One writer per experiment, and resume that finishes the job: real `convogen` processes.

The runs talk to the loopback server of tests/fake_openai.py, which holds a stream until the test
says so; a test therefore knows a run is mid-job before it starts a second run, interrupts it or
kills it with SIGKILL, and nothing depends on timing.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from convogen_tui.core.keeping.files import host_tag
from convogen_tui.core.keeping.lock import RunLock
from convogen_tui.core.keeping.store import ConversationStore
from tests.conftest import REPO
from tests.fake_openai import FakeOpenAI, Reply, running
from tests.scripted import ScriptedBackend
from tests.tui_helpers import copy_sample, wait_for

pytestmark = pytest.mark.process  # real processes or loopback servers, and their waits

ENV = {**os.environ, "PYTHONPATH": str(REPO)}
LIMIT_S = 60.0  # failure guard only: every wait below ends on a condition


def generate(datasets: Path, url: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "convogen_tui", "generate", "sample", "--root", str(datasets),
        "--backend", "openai", "--base-url", url, "--concurrency", "1", "--seed", "3", *extra,
    ]  # fmt: skip


class Proc:
    """A convogen subprocess whose output lines are read as they come."""

    def __init__(self, args: list[str]) -> None:
        self.popen = subprocess.Popen(
            args,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # Ctrl-C as a terminal delivers it: a suite started in the background of a script
            # inherits SIGINT ignored (POSIX shells do that to `cmd &`), and so would the child
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(stream, into), daemon=True)
            for stream, into in ((self.popen.stdout, self.out), (self.popen.stderr, self.err))
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, stream, into: list[str]) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            into.append(line)
            self.lines.put(line)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_line(self, text: str) -> str:
        deadline = time.monotonic() + LIMIT_S
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.popen.poll() is not None and self.lines.empty():
                    break
                continue
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r}; out={self.out} err={self.err}")

    def finish(self) -> int:
        """Wait for the process to end and for its output to be read."""
        code = self.popen.wait(timeout=LIMIT_S)
        for reader in self.readers:
            reader.join(timeout=LIMIT_S)
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.finish()


def wait_until(condition: Callable[[], bool], proc: Proc | None = None) -> None:
    deadline = time.monotonic() + LIMIT_S
    while not condition():
        if proc is not None and proc.popen.poll() is not None:
            raise AssertionError(f"the run ended first: {proc.out} {proc.err}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def records(expt: Path, folder: str) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((expt / folder).glob("*.json"))}


def leftovers(expt: Path) -> list[Path]:
    return [p for p in expt.rglob("*") if p.name.endswith(".tmp")]


@contextmanager
def holding_server() -> Iterator[tuple[FakeOpenAI, threading.Event]]:
    """A loopback server that holds every answer until the gate is set (at the latest on leaving)."""
    gate = threading.Event()
    server = FakeOpenAI(respond=lambda seen: Reply(hold=gate))
    with running(server):
        try:
            yield server, gate
        finally:
            gate.set()


def test_a_second_run_exits_at_once_naming_the_holder_and_wait_waits(sample: Path, datasets: Path) -> None:
    with holding_server() as (server, gate):
        args = generate(datasets, server.url, "--limit", "2")
        first = Proc(args)
        waiter = None
        try:
            wait_until(server.holding.is_set, first)  # mid-job: it holds the experiment's lock
            second = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=LIMIT_S)
            assert second.returncode == 1
            line = second.stderr.strip()
            assert "\n" not in line, line
            assert "another run is writing this experiment" in line
            assert f"pid {first.pid} on {socket.gethostname()}" in line
            assert "convogen generate sample" in line and "since 20" in line and "--wait" in line
            assert len(server.completions()) == 1  # the second run asked the server nothing

            waiter = Proc([*args, "--wait"])
            waiter.wait_line("waiting for the run writing sample to end")
            gate.set()
            assert first.finish() == 0, first.err
            assert waiter.finish() == 0, waiter.err
            # it planned after the first run ended: two new seeds, none of the first run's again
            assert any("wrote 2 conversation(s)" in line for line in waiter.out), waiter.out
        finally:
            gate.set()
            first.kill()
            if waiter is not None:
                waiter.kill()
    convs, twins = records(sample, "conversations"), records(sample, "restyled-conversations")
    assert len(convs) == 4 and len({c["tweet_id"] for c in convs.values()}) == 4
    assert sorted(twins) == sorted(convs)
    assert not (sample / ".convogen" / "run.lock.json").exists()  # released, holder note removed


def test_the_lock_of_a_killed_run_is_taken_over(sample: Path, datasets: Path) -> None:
    with holding_server() as (server, gate):
        args = generate(datasets, server.url, "--limit", "1")
        victim = Proc(args)
        try:
            wait_until(server.holding.is_set, victim)
            os.kill(victim.pid, signal.SIGKILL)
            victim.finish()
        finally:
            victim.kill()
        assert not list((sample / "conversations").glob("*.json")) and not leftovers(sample)
        server.respond = lambda seen: Reply()
        done = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=LIMIT_S)
        gate.set()
    assert done.returncode == 0, done.stderr
    assert "took over the lock of an earlier run" in done.stderr and f"pid {victim.pid}" in done.stderr
    assert len(records(sample, "conversations")) == 1 == len(records(sample, "restyled-conversations"))


def test_interrupted_run_resumes_without_duplicates(sample: Path, datasets: Path) -> None:
    """Ctrl-C while the second job streams (held by the server): one file, then resume to four."""
    gate = threading.Event()
    server = FakeOpenAI()
    server.respond = lambda seen: Reply(hold=gate if len(server.completions()) > 1 else None)
    with running(server):
        args = generate(datasets, server.url, "--limit", "4", "--no-restyle")
        proc = Proc(args)
        try:
            wait_until(server.holding.is_set, proc)
            proc.popen.send_signal(signal.SIGINT)
            assert proc.finish() == 130
        finally:
            gate.set()
            proc.kill()
        err = "".join(proc.err)
        assert "Traceback" not in err and "Run the same command again to resume" in err
        assert len(records(sample, "conversations")) == 1
        assert not leftovers(sample)
        server.respond = lambda seen: Reply()
        done = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=LIMIT_S)
    assert done.returncode == 0, done.stderr
    assert "skipped 1 already done" in done.stdout
    keys = [c["tweet_id"] for c in records(sample, "conversations").values()]
    assert len(keys) == 5 and len(set(keys)) == 5  # --limit 4 made four new ones, none twice


def test_ctrl_c_exits_even_when_a_worker_stays_blocked() -> None:
    """The safety net under Ctrl-C: a thread stuck on a server that never answers (its read
    timeout a minute away) does not keep the process alive; it exits 130 and says why."""
    code = (
        "import threading\n"
        "from convogen_tui.cli import main\n"
        "threading.Thread(target=threading.Event().wait, name='stuck').start()\n"
        "main._exit_after_interrupt(130)\n"
    )
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=LIMIT_S)
    assert done.returncode == 130
    assert "a request still waits on the server; exiting without it" in done.stderr


def test_kill_9_at_several_moments_then_resume_finishes_every_pair(sample: Path, datasets: Path) -> None:
    gate = threading.Event()
    server = FakeOpenAI()
    with running(server):
        args = generate(datasets, server.url, "--limit", "3")
        # 1. killed while its first restyle streams: a conversation saved without its twin
        server.respond = lambda seen: Reply(hold=gate if seen.restyle else None)
        proc = Proc(args)
        wait_until(server.holding.is_set, proc)
        proc.kill()
        assert len(records(sample, "conversations")) == 1 and not records(sample, "restyled-conversations")

        # 2. the rerun restyles it first, then is killed while the next conversation streams
        server.holding.clear()
        server.respond = lambda seen: Reply(hold=None if seen.restyle else gate)
        proc = Proc(args)
        proc.wait_line("resuming: 1 conversation(s) saved earlier have no restyled twin")
        wait_until(server.holding.is_set, proc)
        proc.kill()
        assert len(records(sample, "conversations")) == 1 == len(records(sample, "restyled-conversations"))

        # 3. what a kill during a save leaves: a temp file of a dead writer (and an old-style one)
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        torn = sample / "conversations" / f".x.json.{host_tag()}-{dead.pid}-abcd1234.tmp"
        torn.write_text('{"tweet_id": "1", "conv": "SocBot: half')
        legacy = sample / "restyled-conversations" / ".y.json.k3j4h5g6.tmp"
        legacy.write_text("{")
        os.utime(legacy, (time.time() - 3600, time.time() - 3600))

        server.respond = lambda seen: Reply()
        done = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=LIMIT_S)
        gate.set()
    assert done.returncode == 0, done.stderr
    assert "removed 2 temporary file(s) left by an interrupted run" in done.stdout
    convs, twins = records(sample, "conversations"), records(sample, "restyled-conversations")
    assert len(convs) == 4 and len({c["tweet_id"] for c in convs.values()}) == 4  # 1 + 3 new
    assert sorted(twins) == sorted(convs)  # every conversation has its twin
    assert not leftovers(sample)
    assert ConversationStore(sample).without_twin() == []


def test_reading_and_review_never_need_the_lock(cli, sample: Path, datasets: Path) -> None:
    store = ConversationStore(sample)
    from tests.core.keeping.test_store import record

    conv_id = store.save_conversation(record())
    with RunLock(sample, "convogen generate sample (test)"):
        for args in (("list", datasets), ("show", "sample", "--root", datasets)):
            code, _out, err = cli(*args)
            assert code == 0 and "another run" not in err, err
        assert cli("delete", "sample", conv_id[:8], "--root", datasets)[0] == 0
        assert cli("undo", "sample", "--root", datasets)[0] == 0
        code, _, err = cli("generate", "sample", "--root", datasets, "--limit", "1")
        assert code == 1 and "another run is writing this experiment" in err
        assert "convogen generate sample (test)" in err and f"pid {os.getpid()}" in err
        code, _, err = cli("restyle", "sample", "--root", datasets)
        assert code == 1 and "another run is writing this experiment" in err


async def test_the_app_run_shows_the_same_message_as_a_notification(tmp_path: Path) -> None:
    from convogen_tui.tui.app import ConvogenApp
    from convogen_tui.tui.screens.workspace import ExperimentScreen

    root = copy_sample(tmp_path)
    expt = root / "inst-templates" / "sample"
    app = ConvogenApp(root, "sample", load_model=False)
    backend = ScriptedBackend()
    with RunLock(expt, "convogen generate sample --limit 9"):
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen))
            screen = app.screen
            assert isinstance(screen, ExperimentScreen) and app.session is not None
            app.session.backend = backend
            await pilot.press("f5", "ctrl+g")
            await wait_for(pilot, lambda: any("another run" in n.message for n in app._notifications))
            busy = next(n.message for n in app._notifications if "another run" in n.message)
            assert "another run is writing this experiment" in busy and f"pid {os.getpid()}" in busy
            assert "convogen generate sample --limit 9" in busy
            await wait_for(pilot, lambda: not screen.generate.running)
            assert backend.prompts == []  # nothing was generated
    assert not list(expt.glob("conversations/*.json"))


def test_a_stale_holder_note_does_not_block(sample: Path) -> None:
    """A holder note left by a dead run (no OS lock held) never blocks: the lock is free."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (sample / ".convogen").mkdir(exist_ok=True)
    note = {"pid": dead.pid, "host": socket.gethostname(), "command": "convogen generate x", "since": 1.0}
    (sample / ".convogen" / "run.lock.json").write_text(json.dumps(note))
    lock = RunLock(sample, "me").acquire()
    try:
        assert lock.took_over is not None and lock.took_over.pid == dead.pid
        assert lock.took_over.running() is False
    finally:
        lock.release()
    assert not (sample / ".convogen" / "run.lock.json").exists()
