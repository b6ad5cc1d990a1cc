"""Stats (F8): an experiment at a glance, kept current while conversations arrive.

A summary line (counts, distinct-1/2, MTLD, coverage, tok/s), then four plots: conversation length
and turn histograms, the seed x persona coverage grid as a heat map, and the flag rates. The bar
charts (widgets.bars) choose round ticks that cover the data, so no axis misstates a bar.
An idle screen costs nothing: once a second it compares the stamps of the conversation, twin,
trash and judgment folders and of the seed file (a ``stat`` each; every write in this project is a
rename into its folder). Only when one changed does a worker refresh the index (in proportion to
what changed) and, if its generation moved, recompute the statistics from the index (diversity
from its sketches: no file read). A change that arrives while a computation runs starts one more
after it, never several: at most one computation per burst of changes.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid
from textual.message import Message
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Static

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.judging.calibration import MIN_MARKED
from convogen_tui.core.judging.coverage import STATES, Coverage, coverage_of, trashed_keys
from convogen_tui.core.judging.scores import cell_means
from convogen_tui.core.judging.stats import DiversityCache, experiment_stats, index_diversity
from convogen_tui.core.keeping.tracked import stamp
from convogen_tui.core.making.check import seeds_for
from convogen_tui.core.making.experiment import Persona
from convogen_tui.core.making.seeds import Seed
from convogen_tui.tui.keys import KeyFooter
from convogen_tui.tui.session import Session
from convogen_tui.tui.typed import convogen_app
from convogen_tui.tui.widgets.bars import BarChart
from convogen_tui.tui.widgets.titlebar import TitleBar
from convogen_tui.tui.workers import ReportsWorkerErrors, background

# how each cell state shows in the heat map, and a shade by the share of a column's seeds done
CELL_STYLE = {"done": "green", "flagged": "yellow", "deleted": "red", "missing": "grey42"}
SCORE_STYLE = ["red", "dark_orange", "yellow", "green_yellow", "green"]  # lowest to highest score
FIT = "persona_fit"  # the criterion the heat map can show
SHADES = " ░▒▓█"


def label_room(labels: list[str], most: int, least: int = 14) -> int:
    """Cells for the persona labels: 14, or more (up to ``most``) until no two cut labels are alike."""
    width = min(max(len(label) for label in labels), least)
    while len({label[:width] for label in labels}) < len(set(labels)) and width < min(
        most, max(map(len, labels))
    ):
        width += 1
    return width


class CoverageMap(Static):
    """Personas down, seeds across: one character per seed, or per group of seeds when they do not fit."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.coverage: Coverage | None = None
        self.border_title = "Coverage: personas x seeds"
        self.scores: dict[tuple[str, str, str], float] | None = None  # mean persona_fit per cell
        self.scale: tuple[int, int] = (1, 5)
        self.show_scores = False

    def show(
        self,
        coverage: Coverage | None,
        scores: dict[tuple[str, str, str], float] | None = None,
        scale: tuple[int, int] = (1, 5),
    ) -> None:
        self.coverage, self.scores, self.scale = coverage, scores, scale
        self.update(self.render_map())

    def toggle_scores(self) -> bool:
        """Switch between the cells' states and their mean persona_fit; False when there is none."""
        if self.scores is None and not self.show_scores:
            return False
        self.show_scores = not self.show_scores
        self.border_title = (
            f"Mean {FIT}: personas x seeds" if self.show_scores else "Coverage: personas x seeds"
        )
        self.update(self.render_map())
        return True

    def _score_cell(self, seeds: list[Seed], persona: Persona) -> tuple[str, str]:
        """A cell (or a group of seeds) as its mean score: a shade by the score, or · not judged."""
        assert self.scores is not None
        found = [
            self.scores[key]
            for s in seeds
            if (key := (s.tweet_id, persona.motivation, persona.disposition)) in self.scores
        ]
        if not found:
            return "·", CELL_STYLE["missing"]
        low, high = self.scale
        share = (sum(found) / len(found) - low) / (high - low)
        return "█", SCORE_STYLE[min(int(share * len(SCORE_STYLE)), len(SCORE_STYLE) - 1)]

    def on_resize(self) -> None:
        self.update(self.render_map())

    def render_map(self) -> Text:
        coverage = self.coverage
        if coverage is None:
            return Text("no seed file: coverage unknown", style="dim")
        if not coverage.seeds or not coverage.personas:
            return Text("no seeds or no personas", style="dim")
        label_width = label_room([p.label for p in coverage.personas], self.content_size.width // 2)
        width = max(self.content_size.width - label_width - 1, 4)
        seeds = coverage.seeds
        group = -(-len(seeds) // width)  # seeds per column
        text = Text(no_wrap=True, overflow="crop")
        for persona in coverage.personas:
            text.append(persona.label[:label_width].ljust(label_width) + " ", style="bold")
            for start in range(0, len(seeds), group):
                if self.show_scores and self.scores is not None:
                    text.append(*self._score_cell(seeds[start : start + group], persona))
                    continue
                states = [coverage.state(s, persona) for s in seeds[start : start + group]]
                if group == 1:
                    state = states[0]
                    text.append("█" if state != "missing" else "·", style=CELL_STYLE[state])
                else:
                    done = states.count("done") / len(states)
                    worst = next((s for s in ("flagged", "deleted") if s in states), "done")
                    style = CELL_STYLE[worst] if done else CELL_STYLE["missing"]
                    text.append(SHADES[round(done * (len(SHADES) - 1))] if done else "·", style=style)
            text.append("\n")
        if self.show_scores:
            low, high = self.scale
            text.append(f"{FIT} {low}", style="dim")
            for style in SCORE_STYLE:
                text.append("█", style=style)
            text.append(f" {high} · not judged")
            return text
        counts = coverage.counts()
        for state in STATES:
            text.append("█" if state != "missing" else "·", style=CELL_STYLE[state])
            text.append(f"{state} {counts[state]} ")
        if group > 1:
            text.append(f"\n{group} seeds a column, shaded by the share done", style="dim")
        return text


class JudgePanel(Static):
    """The judge's scores: a bar per score value for each criterion, the mean, and calibration."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.border_title = "Judge scores"

    def show(self, stats: dict[str, Any]) -> None:
        self.update(judge_panel_text(stats))


def judge_panel_text(stats: dict[str, Any]) -> Text:
    """One line per criterion (bars over the scale, mean, n), then the calibration in brief."""
    criteria, counts = stats.get("judge"), stats.get("judgments")
    if not criteria or not counts:
        return Text("no judge criteria in expt-setup.json", style="dim")
    if not counts["judged"]:
        return Text("nothing judged yet: convogen judge EXPT,\nor generate --judge", style="dim")
    low, high = counts["scale"]
    text = Text(no_wrap=True, overflow="crop")
    text.append(f"{'':15} {''.join(str(v % 10) for v in range(low, high + 1))}  mean\n", style="dim")
    for name, figures in criteria.items():
        peak = max(figures["histogram"].values(), default=0) or 1
        bars = "".join(SHADES[-(-4 * n // peak)] if n else "·" for n in figures["histogram"].values())
        mean = f"{figures['mean']:.1f}" if figures["mean"] is not None else "-"
        text.append(f"{name[:15]:15} ", style="bold")
        text.append(bars, style="green")
        text.append(f"  {mean:>4} n{figures['n']}\n")
    calibration = stats["calibration"]
    if calibration["enough"]:
        mean = calibration["mean"]
        text.append(f"vs marks: kappa {mean['kappa']:.2f} at mean>={mean['threshold']:g} (n {mean['n']})")
    else:
        text.append(f"vs marks: {calibration['n']} marked, need {MIN_MARKED}", style="dim")
    if counts["failed"] or counts["stale"]:
        text.append(f"\n{counts['failed']} judge-failed · {counts['stale']} stale", style="yellow")
    return text


def turns_title(stats: dict[str, Any]) -> str:
    """The turns chart's title: each version's own target (a template edit changes it)."""
    targets = sorted({(v["version"], v["turns_target"]) for v in stats.get("versions") or []})
    if len({t for _, t in targets}) > 1:
        return "Turns (target " + ", ".join(f"{name} {t}" for name, t in targets) + ")"
    return f"Turns (target {targets[0][1] if targets else stats['quality']['turns']})"


def version_summary(stats: dict[str, Any]) -> str:
    """A third summary line when several versions made the conversations: each one's flag rate."""
    versions = stats.get("versions") or []
    if len(versions) < 2:
        return ""
    parts = [
        f"{v['version']} {v['conversations']} convs {v['with_flags'] / v['conversations']:.0%} flagged"
        for v in versions
        if v["conversations"]
    ]
    return "\n" + " · ".join(parts) + " (Compare: c on Review)"


class StatsScreen(ReportsWorkerErrors, Screen[None]):
    """Plots of the open experiment; Esc goes back, r recomputes now."""

    POLL_S: ClassVar[float] = 1.0
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("r", "refresh_stats", "Refresh"),
        Binding("j", "toggle_judge", "Judge", tooltip="judge scores per criterion instead of flag rates"),
        Binding(
            "p", "toggle_fit", "Fit", tooltip="coverage map: mean persona_fit per cell instead of states"
        ),
    ]

    class Computed(Message):
        """A computation's end (``stats`` None: nothing changed, or it failed)."""

        def __init__(
            self,
            stats: dict[str, Any] | None,
            coverage: Coverage | None,
            seen: object,
            fit: dict[tuple[str, str, str], float] | None = None,
        ) -> None:
            super().__init__()
            self.stats = stats
            self.coverage = coverage
            self.seen = seen
            self.fit = fit

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.stats: dict[str, Any] | None = None
        self._version_diversity: dict[str, DiversityCache] = {}  # per version (one computation at a time)
        self._seen: object = None  # what the last computation saw, to skip unchanged polls
        self._stamps: object = None  # the folders' stamps at the last poll
        self._busy = False  # a computation is running (read and set on the UI thread only)
        self._again = False  # something changed while it ran: one more after it
        self.computations = 0  # how many ran (the idle test counts them)

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield Static("computing…", id="stats-summary", markup=False)
        with Grid(id="stats-grid"):
            yield BarChart("Length (characters)", id="stats-lengths")
            yield BarChart("Turns", id="stats-turns")
            yield CoverageMap(id="stats-coverage")
            with ContentSwitcher(initial="stats-flags", id="stats-corner"):
                yield BarChart("Flag rates", horizontal=True, id="stats-flags")
                yield JudgePanel(id="stats-judge")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.title = f"ConvoGen · {self.session.experiment.name} · Stats"
        self.watch(convogen_app(self), "model_status", self._model_changed)
        self._stamps = self._disk_stamps()
        self.action_refresh_stats()
        self.set_interval(self.POLL_S, self._poll)

    def _model_changed(self, status: str) -> None:
        self.sub_title = status

    def action_toggle_judge(self) -> None:
        corner = self.query_one("#stats-corner", ContentSwitcher)
        corner.current = "stats-judge" if corner.current == "stats-flags" else "stats-flags"

    def action_toggle_fit(self) -> None:
        if not self.query_one(CoverageMap).toggle_scores():
            self.notify(f"no {FIT} scores to show: judge the experiment first (convogen judge)")

    def _disk_stamps(self) -> object:
        experiment, store = self.session.experiment, self.session.store
        folders = [store.conv_dir, store.restyled_dir, store.trash_dir, store.judgments_dir]
        seeds = experiment.seeds_path()
        return tuple(stamp(path) for path in [*folders, *([seeds] if seeds else [])])

    def _poll(self) -> None:
        """A few stats a second; a computation only when one of them changed."""
        stamps = self._disk_stamps()
        if stamps != self._stamps:
            self._stamps = stamps
            self._request(self._seen)

    def action_refresh_stats(self) -> None:
        self._seen = None
        self._request(None)

    def _request(self, last_seen: object) -> None:
        if self._busy:
            self._again = True
            return
        self._busy = True
        self.computations += 1
        self.compute(last_seen)

    @background("stats", "computing statistics")
    def compute(self, last_seen: object) -> None:
        """Blocking: refresh the index, then statistics only if it (or the trash, the judgments)
        changed. Always ends with a Computed message, so the next change can start one."""
        message = self.Computed(None, None, last_seen)
        try:
            message = self._compute(last_seen) or message
        finally:
            self.post_message(message)

    def _compute(self, last_seen: object) -> Computed | None:
        store = self.session.store
        judged = stamp(store.judgments_dir)
        seen = (store.refresh()[0], store.trash_count(), judged)
        if seen == last_seen:
            return None
        rows = store.list()
        diversity = index_diversity(store, rows)
        coverage = None
        with contextlib.suppress(ConvogenError):
            coverage = coverage_of(
                seeds_for(self.session.experiment).seeds, self.session.personas(), rows, trashed_keys(store)
            )
        stats = experiment_stats(
            self.session.experiment, store, rows, diversity, coverage, self._version_diversity
        )
        judge = stats.get("judge") or {}
        fit = cell_means(rows, store.judgments(), FIT) if FIT in judge and judge[FIT]["n"] else None
        return self.Computed(stats, coverage, seen, fit)

    def on_stats_screen_computed(self, message: Computed) -> None:
        self._busy = False
        if message.stats is not None:
            self._show(message)
        if self._again:
            self._again = False
            self._request(self._seen)

    def _show(self, message: Computed) -> None:
        assert message.stats is not None
        self._seen = message.seen
        self.stats = message.stats
        self._summary(message.stats)
        self._plots(message.stats)
        scale = tuple((message.stats.get("judgments") or {}).get("scale", (1, 5)))
        self.query_one(CoverageMap).show(message.coverage, message.fit, scale)  # type: ignore[arg-type]
        self.query_one(JudgePanel).show(message.stats)

    def _summary(self, stats: dict[str, Any]) -> None:
        coverage = stats["coverage"]
        cells = (
            f"cells {coverage['done']}/{coverage['cells']} done, {coverage['missing']} missing"
            if coverage
            else "coverage unknown (no seed file)"
        )
        throughput = stats["throughput"]
        self.query_one("#stats-summary", Static).update(
            f"{stats['conversations']} convs · {stats['restyled']} restyled · "
            f"{stats['with_flags']} flagged · {stats['near_duplicates']} near-dup · {cells}\n"
            f"distinct-1 {stats['distinct_1']:.3f} · distinct-2 {stats['distinct_2']:.3f} · "
            f"MTLD {stats['mtld']:.1f} · {throughput['tokens_per_second']} tok/s · "
            f"{throughput['gpu_hours']:.2f} GPU-h" + version_summary(stats)
        )

    def _plots(self, stats: dict[str, Any]) -> None:
        bins = stats["length_chars"]["histogram"]
        self.query_one("#stats-lengths", BarChart).show(
            [str(int(b["from"])) for b in bins],
            [b["count"] for b in bins],
            title="Length (characters)",
            centre=False,  # a bin's label is where it starts
            empty="no conversations yet",
        )
        counts = stats["turns"]["counts"]
        self.query_one("#stats-turns", BarChart).show(
            list(counts),
            list(counts.values()),
            title=turns_title(stats),
            empty="no conversations yet",
        )
        rates = sorted(
            ((rule, f["rate"] * 100) for rule, f in stats["flags"].items() if f["count"]),
            key=lambda item: -item[1],
        )[:6]
        self.query_one("#stats-flags", BarChart).show(
            [rule for rule, _ in rates],
            [rate for _, rate in rates],
            title="Flag rates (% of conversations)",
            unit="%",
            empty="no conversation flagged",
        )
