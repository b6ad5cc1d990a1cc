"""Models screen (F7): every local GGUF model, its details and GPU fit; Enter picks it for runs.

Listing reads GGUF headers only (fast even on a 40 GB file) and runs in a thread worker, as does
the details pane (it may call nvidia-smi). Picking hands the reference to the app, which loads the
model in its background worker; llama.cpp's loader frees the model held before.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Static

from convogen_tui.core.errors import ConvogenError
from convogen_tui.llm.catalog import ModelDetails, ModelSummary
from convogen_tui.llm.gguf_info import format_bytes
from convogen_tui.tui.keys import KeyFooter
from convogen_tui.tui.typed import convogen_app
from convogen_tui.tui.widgets.lists import KeyTable, enter_binding
from convogen_tui.tui.widgets.titlebar import TitleBar
from convogen_tui.tui.workers import ReportsWorkerErrors, WorkerFailed, background


def shown_path(summary: ModelSummary) -> str:
    """Where the file is, as short as it can be said: the embedded model by its package."""
    path = Path(summary.path)
    if summary.source == "embedded":
        return f"{path.name} (in the {path.parent.name} package)"
    for base, prefix in ((Path.cwd(), ""), (Path.home(), "~/")):
        try:
            return prefix + str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)


def details_text(summary: ModelSummary, details: ModelDetails | None, error: str | None) -> str:
    """The details pane: header facts, the full-offload memory estimate and whether it fits."""
    lines = [f"{summary.ref}  ({summary.source})", shown_path(summary)]
    if error or details is None:
        lines.append(f"cannot read it: {error or summary.error}")
        return "\n".join(lines)
    i, est = details.info, details.estimate
    parts = f" in {i.split_count} parts" if i.split_count > 1 else ""
    lines += [
        f"{i.name or '-'} · {i.architecture} · {i.parameters_label} parameters ({i.parameter_count:,}) · "
        f"{i.quantization}",
        f"trained context {i.context_length or '?'} · {i.n_layers or '?'} layers · "
        f"file {format_bytes(i.file_size)}{parts} · chat template: {i.chat_template_family}",
        f"GPU memory for full offload: {est.describe()}",
        f"fit: {details.fit.message}",
    ]
    lines += [f"warning: {w}" for w in i.warnings]
    return "\n".join(lines)


COLUMNS = (" ", "model", "arch", "params", "quant", "ctx", "size", "template")


class ModelTable(KeyTable):
    BINDINGS: ClassVar[list[BindingType]] = [enter_binding("Use", "use this model for the runs")]


class ModelsScreen(ReportsWorkerErrors, Screen[None]):
    """The model list; the highlighted model's details below; Enter uses it for this session's runs."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "rescan", "Rescan"),
        Binding("escape", "close", "Back"),
    ]

    class Listed(Message):
        def __init__(self, models: list[ModelSummary]) -> None:
            super().__init__()
            self.models = models

    class Detailed(Message):
        def __init__(self, path: Path, details: ModelDetails | None, error: str | None) -> None:
            super().__init__()
            self.path = path
            self.details = details
            self.error = error

    def __init__(self, project_root: Path, n_ctx: int = 4096) -> None:
        super().__init__()
        self.project_root = project_root
        self.n_ctx = n_ctx
        self.models: list[ModelSummary] = []
        self.details: dict[Path, tuple[ModelDetails | None, str | None]] = {}
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield ModelTable(id="models-table", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="model-details-box"):
            yield Static("", id="model-details", markup=False)
        yield Static("looking for models…", id="models-status", markup=False)
        yield KeyFooter()

    def on_mount(self) -> None:
        self.title = "ConvoGen · Models"
        self.watch(convogen_app(self), "model_status", self.model_changed)
        table = self.query_one(ModelTable)
        table.fill(COLUMNS, [])
        table.focus()
        self.action_rescan()

    def model_changed(self, status: str) -> None:
        self.sub_title = status
        if self.models:
            self._fill()

    def action_rescan(self) -> None:
        self.query_one("#models-status", Static).update("looking for models…")
        self._list()

    @background("models-list", "looking for models")
    def _list(self) -> None:
        from convogen_tui.llm.catalog import list_models

        self.post_message(self.Listed(list_models(self.project_root)))

    @on(Listed)
    def _listed(self, message: Listed) -> None:
        self.models = message.models
        self.details.clear()
        self._fill()
        unreadable = sum(1 for m in self.models if m.info is None)
        bad = f", {unreadable} unreadable" if unreadable else ""
        self.query_one("#models-status", Static).update(
            f"{len(self.models)} model(s){bad} in models/, $CONVOGEN_MODELS, HF cache · Enter: use it"
        )

    def _in_use(self) -> Path | None:
        session = convogen_app(self).session
        backend = session.backend if session is not None else None
        path = backend.info.path if backend is not None else None
        return Path(path).resolve() if path else None

    def _fill(self) -> None:
        table = self.query_one(ModelTable)
        row = table.cursor_row
        in_use = self._in_use()
        rows: list[tuple[str, list[str]]] = []
        for m in self.models:
            used = "●" if in_use is not None and m.path.resolve() == in_use else ""
            ref = m.ref if len(m.ref) <= 40 else "…" + m.ref[-39:]
            i = m.info
            if i is None:
                rows.append((str(m.path), [used, ref, "unreadable", "", "", "", "", ""]))
                continue
            size = format_bytes(i.file_size)
            ctx = str(i.context_length or "?")
            family = i.chat_template_family
            rows.append(
                (
                    str(m.path),
                    [used, ref, i.architecture, i.parameters_label, i.quantization, ctx, size, family],
                )
            )
        table.fill(COLUMNS, rows)
        if self.models:
            table.move_cursor(row=min(max(row, 0), len(self.models) - 1))
        self._schedule_details()

    def current(self) -> ModelSummary | None:
        row = self.query_one(DataTable).cursor_row
        return self.models[row] if 0 <= row < len(self.models) else None

    @on(DataTable.RowHighlighted, "#models-table")
    def _highlighted(self) -> None:
        self._schedule_details()

    def _schedule_details(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(0.08, self._show_details)

    def _show_details(self) -> None:
        summary = self.current()
        view = self.query_one("#model-details", Static)
        if summary is None:
            view.update("no GGUF models found: put .gguf files in models/ or run convogen models pull")
            return
        if summary.path in self.details:
            details, error = self.details[summary.path]
            view.update(details_text(summary, details, error))
            return
        if summary.info is None:
            view.update(details_text(summary, None, summary.error))
            return
        view.update(details_text(summary, None, None).split("\n", 2)[0] + "\nreading the details…")
        self._details(summary.path)

    @background("models-details", "reading a model's details")
    def _details(self, path: Path) -> None:
        from convogen_tui.llm.catalog import model_details

        try:
            self.post_message(self.Detailed(path, model_details(path, self.n_ctx), None))
        except ConvogenError as exc:
            self.post_message(self.Detailed(path, None, str(exc)))

    @on(WorkerFailed)
    def _worker_failed(self, message: WorkerFailed) -> None:
        """An odd file made the details fail: say so in the pane too, not only in a notification."""
        summary = self.current()
        if message.group == "models-details" and summary is not None:
            self.details[summary.path] = (None, message.message)
            self.query_one("#model-details", Static).update(details_text(summary, None, message.message))

    @on(Detailed)
    def _detailed(self, message: Detailed) -> None:
        self.details[message.path] = (message.details, message.error)
        summary = self.current()
        if summary is not None and summary.path == message.path:
            self.query_one("#model-details", Static).update(
                details_text(summary, message.details, message.error)
            )

    @on(DataTable.RowSelected, "#models-table")
    def _selected(self) -> None:
        self.action_use()

    def action_use(self) -> None:
        summary = self.current()
        if summary is None:
            return
        if summary.info is None:
            self.notify(f"cannot use {summary.ref}: {summary.error}", severity="error", timeout=10)
            return
        if convogen_app(self).use_model(summary.ref):
            self.dismiss()

    def action_close(self) -> None:
        self.dismiss()
