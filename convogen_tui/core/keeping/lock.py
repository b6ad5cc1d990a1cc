"""One writer per experiment: the lock every run (CLI generate/restyle, the app's Generate) holds.

Two runs on one experiment would each make every (seed, persona) job, so a run takes
``EXPT/.convogen/run.lock`` (an OS file lock through ``filelock``: the kernel drops it when its
process dies, even by kill -9, so a dead run's lock is simply taken over). Beside it,
``run.lock.json`` names the holder (pid, host, command, start time) for the message a second run
gets. Reading (list, show, review, check) never takes the lock; neither do delete, undo and marks,
which use the store's own short lock (``core.store``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

from convogen_tui.core.errors import ConvogenError, Problem, StorageError
from convogen_tui.core.keeping.files import atomic_write_json, storage_problem

LOCK_FOLDER = ".convogen"
LOCK_FILE = "run.lock"
HOLDER_FILE = "run.lock.json"
WAIT_HINT = "wait for it with --wait, or stop that run first"


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) an experiment's run lock."""

    pid: int
    host: str
    command: str
    since: float

    @classmethod
    def me(cls, command: str) -> Holder:
        return cls(os.getpid(), socket.gethostname(), command, time.time())

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"pid {self.pid} on {self.host}, `{self.command}`, since {when}"

    def running(self) -> bool | None:
        """Whether the process still runs; None when it ran on another host (cannot tell)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class ExperimentBusy(ConvogenError):
    """Another run holds the experiment's lock."""

    def __init__(self, expt_dir: Path, holder: Holder | None, hint: str = WAIT_HINT) -> None:
        who = holder.describe() if holder else "its details are not written yet"
        super().__init__(Problem(expt_dir, f"another run is writing this experiment ({who})", hint=hint))
        self.holder = holder


def current_command() -> str:
    """How this process was started, short enough for one line: ``convogen generate sample ...``."""
    args = [Path(sys.argv[0]).name if sys.argv else "python", *sys.argv[1:]]
    if args and args[0] in ("__main__.py", "-m"):
        args[0] = "convogen"
    text = " ".join(args)
    return text if len(text) <= 120 else text[:119] + "…"


class RunLock:
    """The run lock of one experiment folder; use as a context manager or acquire/release."""

    def __init__(self, expt_dir: Path, command: str | None = None) -> None:
        self.dir = Path(expt_dir)
        self.folder = self.dir / LOCK_FOLDER
        self.path = self.folder / LOCK_FILE
        self.holder_path = self.folder / HOLDER_FILE
        self.command = command or current_command()
        self._lock = FileLock(str(self.path), timeout=0, thread_local=False)
        self.me: Holder | None = None
        self.took_over: Holder | None = None  # a holder that died without releasing

    def holder(self) -> Holder | None:
        """The holder named beside the lock file (the current one, or a dead run's)."""
        try:
            data = json.loads(self.holder_path.read_text(encoding="utf-8"))
            return Holder(int(data["pid"]), str(data["host"]), str(data["command"]), float(data["since"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def acquire(
        self,
        wait: bool = False,
        on_wait: Callable[[Holder | None], None] | None = None,
        busy_hint: str = WAIT_HINT,
    ) -> RunLock:
        """Take the lock now, or raise ExperimentBusy naming the holder; ``wait`` blocks until free.

        ``on_wait`` is called once, with the holder, before blocking (to say what it waits for).
        """
        try:
            self.folder.mkdir(parents=False, exist_ok=True)
        except OSError as exc:
            raise StorageError.of(exc, storage_problem(exc, self.dir)) from None
        try:
            try:
                self._lock.acquire(timeout=0)
            except Timeout:
                holder = self.holder()
                if holder is not None and holder.running() is False:
                    holder = None  # a dead run's note: the new holder has not written its own yet
                if not wait:
                    raise ExperimentBusy(self.dir, holder, busy_hint) from None
                if on_wait is not None:
                    on_wait(holder)
                self._lock.acquire(timeout=-1, poll_interval=0.2)
        except OSError as exc:
            raise StorageError.of(exc, storage_problem(exc, self.folder)) from None
        previous = self.holder()
        if previous is not None and previous.pid != os.getpid():
            self.took_over = previous  # it released nothing: killed, or the machine went down
        self.me = Holder.me(self.command)
        try:
            atomic_write_json(self.holder_path, asdict(self.me), create_parents=False)
        except BaseException:
            self._lock.release()
            raise
        return self

    def release(self) -> None:
        if not self._lock.is_locked:
            return
        if self.me is not None and (self.holder() or self.me).pid == self.me.pid:
            with contextlib.suppress(OSError):
                self.holder_path.unlink()
        self._lock.release()
        self.me = None

    @property
    def held(self) -> bool:
        return bool(self._lock.is_locked)

    def __enter__(self) -> RunLock:
        if not self.held:
            self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
