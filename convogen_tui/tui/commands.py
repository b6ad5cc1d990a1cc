"""The command palette's own commands, asked of the app and of the screen it was opened over.

The app does not know what a screen can do: each screen (and the app, for what works everywhere)
offers ``palette_commands()``, a list of :class:`PaletteCommand`, and :class:`ScreenCommands`
shows them. A screen builds its list from its own parts, so a pane's actions stay the pane's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from textual.command import DiscoveryHit, Hit, Hits, Provider


@dataclass(frozen=True)
class PaletteCommand:
    """One line of the palette: what it does, its key (or where it works), and the call."""

    title: str
    help: str
    run: Callable[[], object]


@runtime_checkable
class OffersCommands(Protocol):
    def palette_commands(self) -> Iterable[PaletteCommand]: ...


def commands_for(*sources: object) -> list[PaletteCommand]:
    """The commands of each source that offers some (the app, then the screen)."""
    found: list[PaletteCommand] = []
    for source in sources:
        if isinstance(source, OffersCommands):
            found.extend(source.palette_commands())
    return found


class ScreenCommands(Provider):
    """The app's commands and those of the screen under the palette."""

    def _commands(self) -> list[PaletteCommand]:
        return commands_for(self.app, self.screen)

    async def discover(self) -> Hits:
        for command in self._commands():
            yield DiscoveryHit(command.title, command.run, help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands():
            score = matcher.match(command.title)
            if score > 0:
                yield Hit(score, matcher.highlight(command.title), command.run, help=command.help)
