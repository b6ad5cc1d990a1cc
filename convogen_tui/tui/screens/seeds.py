"""Seeds pane: the seed file as a table with incremental search; pick one, several, or N at random."""

from __future__ import annotations

import random
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Input, Static

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.seeds import Seed
from convogen_tui.tui.screens.dialogs import AskDialog
from convogen_tui.tui.session import Session

MAX_ROWS = 500  # rows drawn at once; the search narrows the rest


def one_line(text: str, width: int = 200) -> str:
    flat = text.replace("\r", "").replace("\n", " ⏎ ")
    return flat if len(flat) <= width else flat[: width - 1] + "…"


class SeedsPane(Vertical):
    """Space picks or unpicks a seed; Enter runs just this one on the Generate screen."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_pick", "Pick"),
        Binding("enter", "run_one", "Run this", show=False),
        Binding("a", "pick_shown", "Pick shown"),
        Binding("n", "pick_random", "N random"),
        Binding("c", "clear", "Clear picks"),
        Binding("slash", "search", "Search"),
    ]

    class Loaded(Message):
        def __init__(self, seeds: list[Seed], error: str | None) -> None:
            super().__init__()
            self.seeds = seeds
            self.error = error

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self.seeds: list[Seed] = []
        self.shown: list[Seed] = []
        self._debounce: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Input(placeholder="/ search id or text (Enter: to the table)", id="seed-search")
        yield DataTable(id="seed-table", cursor_type="row", zebra_stripes=True)
        yield Static("loading seeds…", id="seed-status", markup=False)

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("✓", "tweet_id", "tweet")
        self.load()

    @work(thread=True, exclusive=True, group="seeds")
    def load(self) -> None:
        try:
            seeds = self.session.seeds().seeds
            self.post_message(self.Loaded(seeds, None))
        except ConvogenError as exc:
            self.post_message(self.Loaded([], str(exc)))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        self.seeds = message.seeds
        if message.error:
            self.query_one("#seed-status", Static).update(message.error)
            return
        self.filter()

    @on(Input.Changed, "#seed-search")
    def _search_changed(self) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(0.1, self.filter)

    @on(Input.Submitted, "#seed-search")
    def _search_done(self) -> None:
        self.query_one(DataTable).focus()

    def filter(self) -> None:
        """Show the seeds matching the search (id or text, case-insensitive)."""
        query = self.query_one("#seed-search", Input).value.strip().lower()
        self.shown = [s for s in self.seeds if not query or query in s.tweet_id or query in s.tweet.lower()]
        table = self.query_one(DataTable)
        table.clear()
        picked = {s.tweet_id for s in self.session.picked}
        for seed in self.shown[:MAX_ROWS]:
            table.add_row(
                "✓" if seed.tweet_id in picked else "", seed.tweet_id, one_line(seed.tweet), key=seed.tweet_id
            )
        self._status()

    def _status(self) -> None:
        shown = len(self.shown)
        more = f" (first {MAX_ROWS} drawn; search to narrow)" if shown > MAX_ROWS else ""
        self.query_one("#seed-status", Static).update(
            f"{len(self.session.picked)} picked · {shown} of {len(self.seeds)} shown{more} · "
            "space pick · n random · Enter run this"
        )

    def _current(self) -> Seed | None:
        table = self.query_one(DataTable)
        if not self.shown or table.cursor_row < 0 or table.cursor_row >= min(len(self.shown), MAX_ROWS):
            return None
        return self.shown[table.cursor_row]

    def _set_picked(self, seeds: list[Seed]) -> None:
        self.session.picked = seeds
        table = self.query_one(DataTable)
        picked = {s.tweet_id for s in seeds}
        column = table.ordered_columns[0].key
        for seed in self.shown[:MAX_ROWS]:
            table.update_cell(seed.tweet_id, column, "✓" if seed.tweet_id in picked else "")
        self._status()

    def action_toggle_pick(self) -> None:
        seed = self._current()
        if seed is None:
            return
        picked = list(self.session.picked)
        if seed in picked:
            picked.remove(seed)
        else:
            picked.append(seed)
        self._set_picked(picked)
        self.query_one(DataTable).action_cursor_down()

    def action_pick_shown(self) -> None:
        self._set_picked(list(self.shown))

    def action_clear(self) -> None:
        self._set_picked([])

    def action_search(self) -> None:
        self.query_one("#seed-search", Input).focus()

    def action_pick_random(self) -> None:
        def picked(answer: str | None) -> None:
            if not answer:
                return
            try:
                n = int(answer)
            except ValueError:
                self.notify(f"'{answer}' is not a number", severity="error")
                return
            pool = self.shown or self.seeds
            self._set_picked(random.sample(pool, min(max(n, 0), len(pool))))
            self.notify(f"picked {len(self.session.picked)} seed(s) at random")

        self.app.push_screen(AskDialog("How many seeds to pick at random (from those shown)?", "5"), picked)

    def action_run_one(self) -> None:
        seed = self._current()
        if seed is None:
            return
        self._set_picked([seed])
        self.screen.show_pane("generate")  # type: ignore[attr-defined]

    @on(DataTable.RowSelected, "#seed-table")
    def _row_selected(self) -> None:
        self.action_run_one()
