"""The ConvoGen app: screens, the model loaded once in the background, help, palette, $EDITOR.

Screens do the work; this file wires them and owns what lives longer than a screen: the root, the
model (loaded in a thread worker, reported through messages), the app-wide keys, the one place
worker failures are reported (``report_worker_error``), and the question asked before quitting or
closing an experiment with unsaved edits.
"""

from __future__ import annotations

import gc
import os
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from textual import events, on
from textual.app import App
from textual.binding import Binding, BindingType
from textual.dom import DOMNode
from textual.notifications import SeverityLevel
from textual.worker import Worker

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.keeping.redact import redact
from convogen_tui.core.making.pipeline import Job
from convogen_tui.tui.commands import PaletteCommand, ScreenCommands
from convogen_tui.tui.editing import KeepsEdits
from convogen_tui.tui.keys import HelpSection, binding_keys
from convogen_tui.tui.messages import ModelFailed, ModelReady, RunJobs
from convogen_tui.tui.screens.compare import CompareScreen
from convogen_tui.tui.screens.dialogs import ChoiceDialog, HelpScreen
from convogen_tui.tui.screens.experiments import ExperimentsScreen, ExperimentTable
from convogen_tui.tui.screens.models import ModelsScreen, ModelTable
from convogen_tui.tui.screens.stats import StatsScreen
from convogen_tui.tui.screens.workspace import ExperimentScreen
from convogen_tui.tui.session import Session
from convogen_tui.tui.typed import ShellApp
from convogen_tui.tui.workers import ReportsWorkerErrors, WorkerFailed, background, describe_error

WORKER_JOBS = {"model": "the model did not load"}
GC_EVERY_S = 30.0  # a full garbage collection this often, when no key came for GC_QUIET_S
GC_QUIET_S = 3.0


class ConvogenApp(ReportsWorkerErrors, ShellApp):
    """Browse experiments, edit, preview, generate and review, all from the keyboard."""

    CSS_PATH = "app.tcss"
    TITLE = "ConvoGen"
    COMMANDS = App.COMMANDS | {ScreenCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "Help", id="help"),
        # F-keys get lost over SSH and tmux
        Binding("question_mark", "help", "Help", show=False, id="help.question_mark"),
        Binding("f7", "models", "Models", priority=True, id="models"),  # over TextArea's f7 (select all)
        Binding("f8", "stats", "Stats", priority=True, show=False, id="stats"),  # in help and the palette
        Binding("f9", "open_in_editor", "$EDITOR", id="open_in_editor"),
        Binding("ctrl+q", "quit", "Quit", priority=True, show=False, id="quit"),
    ]

    def __init__(
        self,
        root: Path,
        experiment: str | Path | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        load_model: bool = True,
        seed: int | None = None,
        threads: int | None = None,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.start_experiment = experiment
        self.model = model
        self.max_tokens = max_tokens
        self.seed = seed
        self.threads = threads
        self.load_model_enabled = load_model
        self.model_loading = False  # a load is under way: runs asked for now wait for it
        self.session: Session | None = None
        self.workspace: ExperimentScreen | None = None  # the open experiment's screen, if any
        # no sliding tab underline or smooth scrolling: each frame of an animation is redrawn and,
        # over SSH, sent; a tab switch drew ~20 frames instead of one
        self.animation_level = "none"

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every notification passes through the one redaction step (core.redact)."""
        kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        super().notify(redact(message), title=redact(title), severity=severity, markup=markup, **kwargs)

    def on_mount(self) -> None:
        self._last_key = time.monotonic()
        # Python's full collection walks every object the app holds (a few hundred ms on a busy
        # machine) and came in the middle of key presses; it runs here while the user is idle
        # instead, and what the app has built is frozen out of the scans
        gc.set_threshold(*gc.get_threshold()[:2], 1_000_000)
        self.set_interval(GC_EVERY_S, self._collect_when_idle)
        self.push_screen(ExperimentsScreen(self.root))
        if self.start_experiment is not None:
            from convogen_tui.core.making.experiment import locate_experiment

            try:
                self.open_experiment(locate_experiment(self.start_experiment, self.root))
            except ConvogenError as exc:
                self.notify(str(exc), title="cannot open", severity="error", timeout=10)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key):
            self._last_key = time.monotonic()
        await super().on_event(event)

    def _collect_when_idle(self) -> None:
        """Collect garbage while nobody types, then freeze what survives out of later scans."""
        if time.monotonic() - self._last_key >= GC_QUIET_S:
            gc.collect()
            gc.freeze()

    # experiments --------------------------------------------------------------------------
    def open_experiment(self, path: Path) -> None:
        """Open an experiment in its own screen; the model loads in the background if needed."""
        previous = self.session
        self.session = Session.open(path, self.model, self.max_tokens, self.seed, self.threads)
        if previous is not None and previous.backend is not None:
            self.session.backend = previous.backend
        if isinstance(self.screen, ExperimentScreen):
            self.pop_screen()
        self.workspace = ExperimentScreen(self.session)
        self.push_screen(self.workspace)  # it checks the experiment and says so
        self.call_after_refresh(gc.freeze)  # the screen as built: never scanned by the collector
        self._start_model_load()

    def _start_model_load(self) -> None:
        if not self.load_model_enabled or self.session is None:
            return
        if self.session.experiment.setup is None:
            self.set_model_status("model: fix the setup first (F2)")
            return
        self.session.backend = None
        self.model_loading = True
        self.set_model_status("loading model…")
        self._load_model(self.session)

    @background("model", "loading the model")
    def _load_model(self, session: Session) -> None:
        """Blocking load (seconds to minutes): cached per process, so a second open is instant."""
        from convogen_tui.llm.loader import open_backend

        try:
            backend = open_backend(session.experiment, session.model, threads=session.threads)
        except ConvogenError as exc:  # what the user can fix: the message says what and how
            problem = exc.problems[0] if exc.problems else None
            self.post_message(
                ModelFailed(problem.message if problem else str(exc), problem.hint if problem else None)
            )
            return
        self.post_message(ModelReady(backend))

    @on(ModelReady)
    def _model_ready(self, message: ModelReady) -> None:
        if self.session is not None:
            self.session.use_backend(message.backend)
        self.model_loading = False
        self.set_model_status(message.backend.describe())

    @on(WorkerFailed)
    def _app_worker_failed(self, message: WorkerFailed) -> None:
        if message.group == "model":  # llama.cpp raises plain errors too: reported, status follows
            self.model_loading = False
            self.set_model_status("model: failed to load (see the notification)")

    @on(ModelFailed)
    def _model_failed(self, message: ModelFailed) -> None:
        self.model_loading = False
        self.set_model_status("model: failed to load (see the notification)")
        hint = (
            message.hint or 'set "llm" in expt-setup.json to "default", a .gguf path or OWNER/REPO:FILE.gguf'
        )
        self.notify(
            f"{message.message}\nWhat to do: {hint}", title="model error", severity="error", timeout=30
        )

    def set_model_status(self, status: str) -> None:
        self.model_status = status

    # models -------------------------------------------------------------------------------
    def action_models(self) -> None:
        if isinstance(self.screen, ModelsScreen):
            return
        if self.session is not None:
            root = self.session.experiment.project_root
            setup = self.session.experiment.setup
            n_ctx = setup.n_ctx if setup is not None else 4096
        else:
            root, n_ctx = self.root.resolve().parent, 4096
        self.push_screen(ModelsScreen(root, n_ctx))

    def use_model(self, ref: str) -> bool:
        """Use this model for the session's runs: loaded in the background, the old one freed."""
        session = self.session
        if self.workspace is not None and self.workspace.run_going():
            self.notify("a run is going: Esc on Generate cancels it; then switch models", severity="warning")
            return False
        self.model = ref
        if session is None:
            self.notify(f"picked {ref}: it loads when you open an experiment")
            return True
        session.model = ref
        setup = session.experiment.setup
        if setup is not None and setup.backend.kind == "openai":
            self.notify(
                f'picked {ref}, but this experiment generates through servers ("backend" in the setup): '
                'set "kind": "llama.cpp" there to run it here',
                severity="warning",
                timeout=12,
            )
            return True
        self.notify(f"loading {ref} for this session's runs…")
        self._start_model_load()
        return True

    def action_stats(self) -> None:
        """The open experiment's statistics and plots (F8)."""
        if self.session is None:
            self.notify("open an experiment first: Stats shows one experiment", severity="warning")
        elif not isinstance(self.screen, StatsScreen):
            self.push_screen(StatsScreen(self.session))

    def action_compare(self, a: str | None = None) -> None:
        """Two template versions side by side, and their paired conversations (c on Review)."""
        if self.session is None:
            self.notify(
                "open an experiment first: Compare shows one experiment's versions", severity="warning"
            )
            return
        if isinstance(self.screen, CompareScreen):
            return
        experiment = next((s for s in reversed(self.screen_stack) if isinstance(s, ExperimentScreen)), None)

        def closed(jobs: list[Job] | None) -> None:
            if jobs and experiment is not None:
                experiment.post_message(RunJobs(jobs))

        self.push_screen(CompareScreen(self.session, a), closed)

    def action_experiments(self) -> None:
        def leave() -> None:
            while isinstance(self.screen, ExperimentScreen):
                self.pop_screen()

        if isinstance(self.screen, ExperimentScreen):
            self.unless_unsaved("close this experiment", leave)
            self.workspace = None

    # unsaved edits ------------------------------------------------------------------------
    def keepers(self) -> list[KeepsEdits]:
        """Screens holding editors, topmost first (a persona dialog over its experiment)."""
        return [s for s in reversed(self.screen_stack) if isinstance(s, KeepsEdits)]

    def unless_unsaved(self, doing: str, then: Callable[[], Any]) -> None:
        """Run ``then``, but first ask save / discard / cancel if any editor has unsaved edits."""
        keepers = [k for k in self.keepers() if k.unsaved()]
        if not keepers:
            then()
            return
        if isinstance(self.screen, ChoiceDialog):
            return  # already asking
        names = ", ".join(name for k in keepers for name in k.unsaved())

        def save_next(rest: list[KeepsEdits]) -> None:
            if not rest:
                then()
                return
            rest[0].save_unsaved(lambda: save_next(rest[1:]))

        def answered(choice: str | None) -> None:
            if choice == "save":
                save_next(keepers)
            elif choice == "discard":
                then()

        self.push_screen(
            ChoiceDialog(
                f"Unsaved edits in {names}.",
                [
                    ("s", "save", f"save them, then {doing}"),
                    ("d", "discard", f"discard them and {doing}"),
                ],
                cancel="cancel: back to editing",
            ),
            answered,
        )

    async def action_quit(self) -> None:
        self.unless_unsaved("quit", self.exit)

    # worker failures ----------------------------------------------------------------------
    def report_worker_error(self, worker: Worker[Any], node: DOMNode) -> None:
        """The one place a failed worker is reported: a notification, then WorkerFailed to its widget."""
        message, hint = describe_error(worker.error)
        what = WORKER_JOBS.get(worker.group) or (f"{worker.description} failed" if worker.description else "")
        self.notify(
            message + (f"\nWhat to do: {hint}" if hint else ""),
            title=what or "a background task failed",
            severity="error",
            timeout=20,
        )
        node.post_message(WorkerFailed(worker, message, hint))

    # help, palette, editor ----------------------------------------------------------------
    def key_sections(self) -> list[HelpSection]:
        """Every key of every screen, each screen's section built from its own bindings."""
        everywhere = [("?/F1", "this help (? outside text fields; Esc closes)")]
        everywhere += [k for k in binding_keys(self.BINDINGS) if k[1] != "Help"]
        everywhere += [("ctrl+p", "command palette: every action")]
        everywhere += [("Tab/shift+Tab", "next / previous part of the screen"), ("j/k", "down / up in lists")]
        return [
            HelpSection("Everywhere", everywhere),
            HelpSection(
                "Experiments", binding_keys([*ExperimentTable.BINDINGS, *ExperimentsScreen.BINDINGS])
            ),
            *ExperimentScreen.help_sections(),
            HelpSection("Models (F7)", binding_keys([*ModelTable.BINDINGS, *ModelsScreen.BINDINGS])),
            HelpSection("Stats (F8)", binding_keys(StatsScreen.BINDINGS)),
            HelpSection("Compare (c on Review)", binding_keys(CompareScreen.BINDINGS)),
        ]

    def help_start(self) -> str:
        """The help section of the screen (and tab) help was asked from."""
        screen = self.screen
        if isinstance(screen, ExperimentScreen):
            return screen.help_section()
        kinds = {ExperimentsScreen: "Experiments", ModelsScreen: "Models (F7)", StatsScreen: "Stats (F8)"}
        return next((title for kind, title in kinds.items() if isinstance(screen, kind)), "Everywhere")

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.key_sections(), start=self.help_start()))

    def palette_commands(self) -> list[PaletteCommand]:
        """What works from every screen; the screen under the palette adds its own (commands.py)."""
        commands = [
            PaletteCommand("Help: all keys", "? or F1", self.action_help),
            PaletteCommand(
                "Experiments", "back to the list of experiments (ctrl+o)", self.action_experiments
            ),
            PaletteCommand(
                "Models: list, details, pick one for runs",
                "GGUF files, memory estimate, GPU fit (F7)",
                self.action_models,
            ),
        ]
        if self.session is not None:
            commands.append(
                PaletteCommand(
                    "Stats: quality, diversity, coverage",
                    "plots of the open experiment (F8)",
                    self.action_stats,
                )
            )
            commands.append(
                PaletteCommand(
                    "Compare template versions",
                    "figures, paired conversations, diff, rerun with the current templates (c on Review)",
                    self.action_compare,
                )
            )
        commands.append(
            PaletteCommand(
                "Open in $EDITOR", "edit the current file outside the app (F9)", self.action_open_in_editor
            )
        )
        return commands

    def action_open_in_editor(self) -> None:
        """Suspend the app, run $EDITOR on the current file, then read the file back."""
        screen = self.screen
        path = screen.current_file() if isinstance(screen, ExperimentScreen) else None
        if path is None:
            self.notify("no file here to edit: use Setup, Templates or Review", severity="warning")
            return
        if isinstance(screen, ExperimentScreen) and screen.save_before_editing(
            path, self.action_open_in_editor
        ):
            return  # saved first (asking on a conflict); this runs again after the save
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        try:
            with self.suspend():
                subprocess.run([*shlex.split(editor), str(path)], check=False)
        except Exception as exc:  # SuspendNotSupported in tests and web; a missing editor binary
            self.notify(f"cannot run {editor}: {exc}", severity="error")
            return
        if isinstance(screen, ExperimentScreen):
            screen.reload_after_edit(path)


def run_app(
    root: Path | str = "datasets",
    experiment: str | None = None,
    model: str | None = None,
    max_tokens: int | None = None,
    seed: int | None = None,
    threads: int | None = None,
) -> int:
    app = ConvogenApp(Path(root), experiment, model, max_tokens, seed=seed, threads=threads)
    app.run()
    return app.return_code or 0
