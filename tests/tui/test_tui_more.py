"""The app's second round of flows at 80x24: models screen, seed hydration, remote generation,
bulk delete and empty trash. Real things only: the embedded GGUF, the loopback X API of
tests/fake_x_api.py, and a real `python -m llama_cpp.server` subprocess.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, ProgressBar, Static

from convogen_tui.core.making.backend import GenerationStats
from convogen_tui.core.making.experiment import Persona
from convogen_tui.core.making.pipeline import (
    Job,
    JobFinished,
    JobStarted,
    RunFinished,
    RunStarted,
    TokenChunk,
)
from convogen_tui.core.making.seeds import Seed, read_seeds
from convogen_tui.tui.app import ConvogenApp
from convogen_tui.tui.panes.seeds import SeedsPane
from convogen_tui.tui.screens.dialogs import ConfirmDialog, HydrateDialog
from convogen_tui.tui.screens.models import ModelsScreen
from convogen_tui.tui.screens.workspace import ExperimentScreen
from convogen_tui.tui.widgets.stream_view import StreamView
from tests import tui_helpers as ui
from tests.fake_x_api import FakeXApi, protected, serve_fake_x_api
from tests.tui_helpers import sample_root

__all__ = ["sample_root"]

TOKEN = "AAAAtui-test-token-Qz81secret%3D"


def expt_dir(root: Path) -> Path:
    return root / "inst-templates" / "sample"


def text_of(app: ConvogenApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def set_setup(root: Path, **changes: object) -> None:
    path = expt_dir(root) / "expt-setup.json"
    setup = json.loads(path.read_text())
    setup.update(changes)
    path.write_text(json.dumps(setup, indent=2))


# models -------------------------------------------------------------------------------------
@pytest.mark.llama
async def test_models_screen_lists_the_embedded_model_and_picks_it(sample_root: Path) -> None:
    async with ui.missing_model_app(sample_root) as (app, pilot):
        await pilot.press("f7")
        assert isinstance(app.screen, ModelsScreen)
        screen = app.screen
        table = screen.query_one("#models-table", DataTable)
        await ui.wait_for(pilot, lambda: table.row_count >= 1)
        first = screen.models[0]
        assert first.ref == "default" and first.source == "embedded"
        assert table.get_row_at(0)[2] == first.info.architecture  # type: ignore[union-attr]
        await ui.wait_for(pilot, lambda: "fit:" in text_of(app, "#model-details"))
        details = text_of(app, "#model-details")
        assert "parameters" in details and "GPU memory for full offload" in details
        assert "KV" in details and ("no GPU found" in details or "fit" in details.split("fit:")[1])
        await pilot.press("enter")  # use it: back to the experiment, loaded in the background
        await ui.wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen))
        assert app.model == "default" and app.session is not None and app.session.model == "default"
        await ui.wait_for(pilot, lambda: app.session.backend is not None, 60)  # type: ignore[union-attr]
        assert "failed" not in app.model_status
        await pilot.press("f7")
        await ui.wait_for(pilot, lambda: app.screen.query_one("#models-table", DataTable).row_count >= 1)
        assert app.screen.query_one("#models-table", DataTable).get_row_at(0)[0] == "●"
        await pilot.press("escape")
        assert isinstance(app.screen, ExperimentScreen)


# seeds: size, hydration state, hydrate with progress ---------------------------------------------
@pytest.fixture
def x_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeXApi]:
    yield from serve_fake_x_api(monkeypatch, TOKEN)


async def test_seeds_show_file_state_and_hydrate_in_the_background(
    sample_root: Path, x_api: FakeXApi
) -> None:
    ids = [str(1_650_000_000_000_000_000 + n * 31) for n in range(150)]
    for n, tweet_id in enumerate(ids):
        if n == 3:
            x_api.errors[tweet_id] = protected(tweet_id)
        else:
            x_api.tweets[tweet_id] = f"tweet {n} 🎉\nsecond line"
    x_api.script = ["ok", "429"]  # the second request is rate limited for about a second
    ids_file = sample_root / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    set_setup(sample_root, seeds="../datasets/hydrated.tsv")
    out = sample_root / "hydrated.tsv"

    async with ui.sample_app(sample_root) as (app, pilot, screen):
        await pilot.press("f4")
        pane = screen.query_one(SeedsPane)
        await ui.wait_for(pilot, lambda: "hydrated.tsv" in text_of(app, "#seed-info"))
        assert "not there yet" in text_of(app, "#seed-info")
        statuses: list[str] = []
        original = pane._hydrate_status
        pane._hydrate_status = lambda t: (statuses.append(t), original(t))[1]  # type: ignore[method-assign]
        await pilot.press("h")
        assert isinstance(app.screen, HydrateDialog)
        dialog = app.screen
        assert dialog.query_one("#hydrate-out", Input).value.endswith("hydrated.tsv")
        await pilot.press(*str(ids_file), "enter", "enter")
        await ui.wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen))
        assert pane.hydrating and pane.query_one("#hydrate-box").display
        await ui.wait_for(pilot, lambda: not pane.hydrating, 30)
        table = screen.query_one("#seed-table", DataTable)
        await ui.wait_for(pilot, lambda: table.row_count == 149)
        assert any("rate limited" in s and "going on in" in s for s in statuses), statuses
        assert any("100 hydrated" in s or "99 hydrated" in s for s in statuses), statuses
        bar = pane.query_one("#hydrate-progress", ProgressBar)
        assert bar.total == 150 and bar.progress == 150
        messages = ui.notes(app)
        assert any("149 of 150 ids hydrated, 1 failed" in m for m in messages), messages
        assert all(TOKEN not in m for m in messages + statuses)
        info = text_of(app, "#seed-info")
        assert "149 seeds" in info and "149 of 150 ids hydrated" in info and "1 failed" in info
        assert [s.tweet for s in read_seeds(out).seeds][:1] == ["tweet 0 🎉\nsecond line"]


async def test_hydrate_with_a_bad_token_says_so(sample_root: Path, x_api: FakeXApi, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("X_BEARER_TOKEN", "wrong-token-value")
    ids_file = sample_root / "ids.txt"
    ids_file.write_text("1650000000000000000\n")
    async with ui.sample_app(sample_root) as (app, pilot, screen):
        await pilot.press("f4")
        pane = screen.query_one(SeedsPane)
        pane.start_hydrate(ids_file, sample_root / "other.tsv")
        await ui.wait_for(pilot, lambda: not pane.hydrating, 30)
        messages = ui.notes(app)
        assert any("X_BEARER_TOKEN" in m for m in messages), messages
        assert all("wrong-token-value" not in m for m in messages)


# review: bulk delete, one undo, empty trash ----------------------------------------------------
async def test_review_bulk_delete_undo_and_empty_trash(sample_root: Path) -> None:
    expt = expt_dir(sample_root)
    ui.fake_conversations(expt, 4)
    async with ui.sample_app(sample_root) as (app, pilot, screen):
        table = await ui.review_table(pilot, screen, 4)
        await pilot.press("space", "down", "space", "space")  # c3, c1, c0 (c2 skipped)
        assert screen.review.selected == {"c3", "c1", "c0"}
        assert "3 selected" in text_of(app, "#rev-status")
        await pilot.press("d")
        assert table.row_count == 1 and screen.review.rows[0].id == "c2"
        assert sorted(p.stem for p in (expt / "conversations").glob("*.json")) == ["c2"]
        await pilot.press("u")  # one undo brings the whole batch back
        await ui.wait_for(pilot, lambda: table.row_count == 4)
        assert len(list((expt / "restyled-conversations").glob("*.json"))) == 4
        await pilot.press("d")  # one more (the current row), then empty the trash
        assert table.row_count == 3
        await pilot.press("E")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")  # no: nothing removed
        assert screen.review.session.store.trash_count() == 1
        await pilot.press("E")
        await pilot.press("y")
        assert isinstance(app.screen, ExperimentScreen)
        assert screen.review.session.store.trash_count() == 0
        assert "trash 0" in text_of(app, "#rev-status")
        assert len(list((expt / "conversations").glob("*.json"))) == 3


# generate through a real llama_cpp.server ---------------------------------------------------
@pytest.mark.llama
async def test_generate_streams_through_an_openai_compatible_server(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")
    from tests.llm.test_openai_backend import Server

    server = Server()
    try:
        server.wait_ready()
        root = ui.copy_sample(tmp_path, max_tokens=12)
        set_setup(root, backend={"kind": "openai", "base_urls": [server.url], "concurrency": 2})
        app = ConvogenApp(root, "sample", seed=7)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await ui.opened(pilot, app)
            await ui.wait_for(pilot, lambda: app.session.backend is not None, 60)  # type: ignore[union-attr]
            assert f"127.0.0.1:{server.port}" in app.model_status and "served" in app.model_status
            assert f"127.0.0.1:{server.port}" in str(screen.sub_title)
            conv_view = screen.query_one("#gen-conv", StreamView)
            chunks: list[str] = []
            original = conv_view.append
            conv_view.append = lambda text: (chunks.append(text), original(text))[1]  # type: ignore[method-assign]
            await pilot.press("ctrl+g")
            await ui.wait_for(pilot, lambda: screen.generate.running)
            await ui.wait_for(pilot, lambda: not screen.generate.running, 120)
            status = text_of(app, "#gen-status")
            assert "1 conversation(s), 1 restyled, 0 failed" in status, status
            assert chunks, "nothing streamed into the view"
            assert screen.query_one("#gen-restyled", StreamView).text.strip()
        convs = list((expt_dir(root) / "conversations").glob("*.json"))
        twins = list((expt_dir(root) / "restyled-conversations").glob("*.json"))
        assert len(convs) == 1 and [t.name for t in twins] == [convs[0].name]
        record = json.loads(convs[0].read_text())
        assert record["conv"].strip() and record["conv"].strip() in conv_view.text
        assert record["provenance"]["model"]["backend"] == "openai"
        assert record["provenance"]["model"]["endpoint"].startswith(f"http://127.0.0.1:{server.port}")
    finally:
        server.kill()


async def test_several_streams_one_live_the_others_listed(sample_root: Path) -> None:
    """Events as a backend with two slots produces them: the first stays live, [ ] switch."""
    app = ConvogenApp(sample_root, "sample", load_model=False)
    persona = Persona("distrust", "cynical", "m", "d")
    a, b = Job(Seed("111", "seed a"), persona, 1), Job(Seed("222", "seed b"), persona, 2)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ui.opened(pilot, app)
        await pilot.press("f5")
        pane = screen.generate
        await ui.wait_for(pilot, lambda: app.focused is not None and app.focused.id == "gen-conv")
        pane.running = True
        pane.events.extend(
            [
                RunStarted(2, "m", "remote", parallel=2, passes=4),
                JobStarted(a, 0, 2, "generate"),
                TokenChunk(a, "generate", "SocBot: from a", 3, 0.1),
                JobStarted(b, 1, 2, "generate"),
                TokenChunk(b, "generate", "SocBot: from b", 4, 0.1),
                TokenChunk(a, "generate", " more a", 5, 0.2),
            ]
        )
        jobs = pane.query_one("#gen-jobs", Static)
        await ui.wait_for(pilot, lambda: jobs.display and "222" in str(jobs.render()))
        listed = str(jobs.render())
        assert "▶ 1/2 generate     5 tok · 111" in listed and "  2/2 generate     4 tok · 222" in listed
        conv = pane.query_one("#gen-conv", StreamView)
        assert conv.text == "SocBot: from a more a"  # the first stays shown when the second starts
        assert "2 running ([ ] switch) · job 1/2 shown" in text_of(app, "#gen-status")
        await pilot.press("right_square_bracket")
        assert conv.text == "SocBot: from b"
        await pilot.press("left_square_bracket")
        assert conv.text == "SocBot: from a more a"
        pane.events.append(TokenChunk(b, "generate", " more b", 6, 0.3))
        await ui.wait_for(pilot, lambda: "6 tok · 222" in str(jobs.render()))
        assert conv.text == "SocBot: from a more a"  # b keeps going in the list only
        stats = GenerationStats()
        pane.events.append(JobFinished(a, "generate", "c-a", sample_root / "c-a.json", stats))
        await ui.wait_for(pilot, lambda: not jobs.display)  # one job left: no list
        # a's restyle comes next: the view waits for it rather than jumping to b
        assert conv.text == "SocBot: from a more a" and "job(s) done" in text_of(app, "#gen-status")
        a_twin = Job(a.seed, a.persona, a.random_seed, "c-a", "SocBot: from a more a")
        pane.events.extend(
            [JobStarted(a_twin, 0, 2, "restyle"), TokenChunk(a_twin, "restyle", "@b ok", 2, 0.1)]
        )
        restyled = pane.query_one("#gen-restyled", StreamView)
        await ui.wait_for(pilot, lambda: restyled.text == "@b ok")
        assert "job 1/2 shown · restyle · 111" in text_of(app, "#gen-status")
        pane.events.append(JobFinished(a_twin, "restyle", "c-a", sample_root / "c-a.json", stats))
        await ui.wait_for(pilot, lambda: conv.text == "SocBot: from b more b")  # a is over: b, still running
        pane.events.append(RunFinished())
        await ui.wait_for(pilot, lambda: not pane.running)
