"""A typed handle on the app for screens and panes (``self.app`` is typed as a plain ``App``).

The import is for the type checker only, so panes never import the module that imports them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.dom import DOMNode

if TYPE_CHECKING:
    from convogen_tui.tui.app import ConvogenApp


def convogen_app(node: DOMNode) -> ConvogenApp:
    """The running ConvogenApp, typed, from any widget or screen in it."""
    return cast("ConvogenApp", node.app)
