"""What screens and panes may ask of the app: :class:`ShellApp`, the app's contract, and a typed
handle on it (``self.app`` is typed as a plain ``App``).

The app (``tui/app.py``) implements this class; screens import it from here, never from app.py, so
no module of ``tui/`` imports the module that imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from textual.app import App
from textual.dom import DOMNode
from textual.reactive import reactive

from convogen_tui.tui.session import Session

if TYPE_CHECKING:
    from textual.worker import Worker


class ShellApp(App[int]):
    """The app as its screens see it: the model line, the open session and a few requests."""

    #: the model line screens show in their title bar; they watch it (``watch(app, "model_status")``)
    model_status: reactive[str] = reactive("model: not loaded")
    model_loading: bool = False  # a load is under way: runs asked for now wait for it
    session: Session | None = None

    def open_experiment(self, path: Path) -> None:
        raise NotImplementedError

    def use_model(self, ref: str) -> bool:
        """Use this model for the session's runs; False when that cannot be done now (and said)."""
        raise NotImplementedError

    def report_worker_error(self, worker: Worker[Any], node: DOMNode) -> None:
        raise NotImplementedError


def convogen_app(node: DOMNode) -> ShellApp:
    """The running app, typed, from any widget or screen in it."""
    return cast(ShellApp, node.app)
