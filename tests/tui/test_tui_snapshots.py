"""Snapshots of every screen at 80x24, footer included, without the model: nothing changes run to run.

Each shows the screen a user sees over SSH in the smallest terminal we support: the footer must end
with nothing cut (help always first), status lines and dialogs must not clip, and a seed written
with wide characters (a ZWJ family, a heart with a variation selector, a skin tone, CJK) must leave
every border in line, in the Seeds table and in Review.

Update after an intended change with: pytest tests/tui/test_tui_snapshots.py --snapshot-update
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual.widgets import DataTable, TextArea

from convogen_tui.core.making.experiment import Persona
from convogen_tui.core.making.pipeline import Job, JobStarted, PromptProgress, RunStarted, TokenChunk
from convogen_tui.core.making.seeds import Seed
from convogen_tui.tui.app import ConvogenApp
from convogen_tui.tui.screens.experiments import ExperimentsScreen
from convogen_tui.tui.screens.workspace import ExperimentScreen
from tests.tui_helpers import copy_sample, fake_conversation, settle, wait_for

WIDE_ID = "1700000000000000099"
WIDE_TWEET = "Family 👨‍👩‍👧 says ❤️ it's 👍🏽 fake: 新しいワクチン is a chip"


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ConvogenApp:
    root = copy_sample(tmp_path)
    expt = root / "inst-templates" / "sample"
    seeds = root / "sample-seeds.tsv"
    header, first, *rest = seeds.read_text(encoding="utf-8").splitlines(keepends=True)
    seeds.write_text(header + first + f"{WIDE_ID}\t{WIDE_TWEET}\n" + "".join(rest), encoding="utf-8")
    for i, persona in enumerate(
        [("distrust", "cynical"), ("belonging", "earnest"), ("attention", "hostile")]
    ):
        fake_conversation(
            expt,
            f"0000000{i}-conv",
            f"170000000000000000{i}",
            persona,
            1_700_000_000.0 + 60 * i,
            twin=i != 1,
            turns=8 - 3 * i,
        )
    fake_conversation(
        expt, "00000009-conv", WIDE_ID, ("distrust", "sarcastic"), 1_700_000_300.0, tweet=WIDE_TWEET
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))  # no model from this machine's cache
    monkeypatch.delenv("CONVOGEN_MODELS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))  # no nvidia-smi: the same fit line everywhere
    time.tzset()
    return ConvogenApp(Path("datasets"), "sample", load_model=False)


async def still(pilot) -> None:  # type: ignore[no-untyped-def]
    """Let workers finish and stop cursors blinking."""
    await pilot.pause(0.4)  # debounce timers (the review's conversation load) come due
    await settle(pilot)
    for area in pilot.app.screen.query(TextArea):
        area.cursor_blink = False
        area.notify_style_update()  # drop lines cached in either blink phase: the cursor shows if focused
        area.refresh()
    await pilot.pause(0.1)


def steady(pane: str | None):  # type: ignore[no-untyped-def]
    """Open a pane, wait for its workers, and stop cursors blinking."""

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen))
        if pane is None:
            await pilot.press("ctrl+o")
            await wait_for(pilot, lambda: isinstance(app.screen, ExperimentsScreen) and bool(app.screen.rows))
        else:
            await pilot.press(pane)
            if pane == "f6":
                await wait_for(pilot, lambda: app.screen.query_one("#rev-table", DataTable).row_count == 4)
            if pane == "f4":
                await wait_for(pilot, lambda: app.screen.query_one("#seed-table", DataTable).row_count == 21)
            if pane == "f2":
                await wait_for(pilot, lambda: app.session.report is not None)
        focus = {  # a tab switch focuses a list or the preview, never an editor
            "f2": "persona-grid",
            "f3": "tpl-preview",
            "f4": "seed-table",
            "f5": "gen-conv",
            "f6": "rev-table",
        }
        if pane is not None:
            await wait_for(pilot, lambda: app.focused is not None and app.focused.id == focus[pane])
        await still(pilot)

    return run_before


@pytest.mark.parametrize(
    "pane",
    [None, "f2", "f3", "f4", "f5", "f6"],
    ids=["experiments", "setup", "templates", "seeds", "generate", "review"],
)
def test_screen_snapshot(snap_compare, app: ConvogenApp, pane: str | None) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(app, terminal_size=(80, 24), run_before=steady(pane))


def test_help_snapshot(snap_compare, app: ConvogenApp) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ExperimentScreen))
        await pilot.press("f1")
        await wait_for(pilot, lambda: not isinstance(pilot.app.screen, ExperimentScreen))
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_models_snapshot(snap_compare, app: ConvogenApp) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ExperimentScreen))
        await pilot.press("f7")
        await wait_for(pilot, lambda: "fit:" in str(pilot.app.screen.query_one("#model-details").render()))
        await still(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_review_snapshot_at_120_columns(snap_compare, app: ConvogenApp) -> None:  # type: ignore[no-untyped-def]
    """Wider: the seed's text gets a column, and flags still end inside the screen."""
    assert snap_compare(app, terminal_size=(120, 30), run_before=steady("f6"))


def test_generate_running_snapshot(snap_compare, app: ConvogenApp) -> None:  # type: ignore[no-untyped-def]
    """Two streams: the first (live) reading its prompt, the other writing; status fits in two lines."""
    persona = Persona("distrust", "cynical", "m", "d")
    a = Job(Seed("1700000000000000001", "fluoride"), persona, 1)
    b = Job(Seed(WIDE_ID, WIDE_TWEET), persona, 2)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await steady("f5")(pilot)
        pane = pilot.app.screen.generate
        pane.model.clock = lambda: 0.0  # a still clock: no rate yet, so the ETA reads -:--:--
        pane.running = True
        pane.events.extend(
            [
                RunStarted(2, "m", "CPU", parallel=2, passes=4, max_tokens=1444),
                JobStarted(a, 0, 2, "generate", 1249),
                PromptProgress(a, "generate", 812, 1249),
                JobStarted(b, 1, 2, "generate", 1180),
                TokenChunk(b, "generate", "SocBot: I hear you 👨‍👩‍👧.\nUser: sure ❤️", 12, 1.0),
            ]
        )
        await wait_for(pilot, lambda: pane.query_one("#gen-jobs").display)
        await still(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


async def into_template(pilot) -> None:  # type: ignore[no-untyped-def]
    """Templates, then e: the cursor in the conv-gen editor."""
    await steady("f3")(pilot)
    await pilot.press("e")
    await wait_for(pilot, lambda: pilot.app.focused is not None and pilot.app.focused.id == "tpl-conv-gen")


def test_help_opened_from_review_snapshot(snap_compare, app: ConvogenApp) -> None:  # type: ignore[no-untyped-def]
    """Help asked from Review opens at Review's keys, drop-down keys included."""

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await steady("f6")(pilot)
        await pilot.press("question_mark")
        screen = pilot.app.screen
        section = screen.start_section()
        await wait_for(pilot, lambda: screen.query_one("#help").scroll_y == section.virtual_region.y > 0)
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_review_drop_down_snapshot(snap_compare, app: ConvogenApp) -> None:  # type: ignore[no-untyped-def]
    """v on Review opens the filter drop-down: focused, bordered, over the table."""

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await steady("f6")(pilot)
        await pilot.press("v")
        select = pilot.app.screen.query_one("#rev-show")
        await wait_for(pilot, lambda: select.expanded and select.query_one("SelectOverlay").region.area > 0)
        await still(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_unsaved_edits_dialog_snapshot(snap_compare, app: ConvogenApp) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await into_template(pilot)
        await pilot.press(*"Be brief. ")
        await pilot.press("ctrl+q")
        await still(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_conflict_dialog_snapshot(snap_compare, app: ConvogenApp) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await into_template(pilot)
        await pilot.press(*"Mine. ")
        path = Path("datasets/inst-templates/sample/conv-gen.txt")
        path.write_text("Theirs.\n" + path.read_text())
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.templates.files["conv-gen"].tracked.disk_text is not None)
        # the "changed on disk" toast is a message of its own: cleared once it is there, not before
        await wait_for(pilot, lambda: any("changed on disk" in n.message for n in pilot.app._notifications))
        pilot.app.clear_notifications()
        await pilot.press("ctrl+s")
        await still(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_empty_trash_confirmation_snapshot(snap_compare, app: ConvogenApp) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await steady("f6")(pilot)
        await pilot.press("d")
        pilot.app.clear_notifications()
        await pilot.press("E")
        await still(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
