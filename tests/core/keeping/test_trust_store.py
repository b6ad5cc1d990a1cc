"""The store under everyday accidents: deletes in one second, a bad index, a corrupt file, a delete
during a restyle, a shared group folder (umask)."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest
from textual.widgets import Static

from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.core.making.check import seeds_for
from convogen_tui.core.making.experiment import load_experiment
from convogen_tui.core.making.pipeline import JobFailed, JobFinished, Pipeline, RunFinished, TokenChunk
from tests.core.keeping.test_store import record, restyled
from tests.scripted import Script, ScriptedBackend
from tests.tui_helpers import (
    copy_sample,
    fake_conversation,
    fake_conversations,
    review_table,
    sample_app,
    wait_for,
)


def saved(store: ConversationStore, n: int) -> list[str]:
    ids = []
    for i in range(n):
        conv_id = store.save_conversation(record(str(i)))
        store.save_restyled(conv_id, restyled(f"thread {i}"))
        ids.append(conv_id)
    return ids


# undo ---------------------------------------------------------------------------------------------
def test_undo_after_deletes_in_one_second_restores_the_latest_first(
    cli, sample: Path, datasets: Path
) -> None:
    store = ConversationStore(sample)
    a, b, c = saved(store, 3)
    for conv_id in (a, b, c):  # three deletes well within one second
        assert cli("delete", "sample", conv_id[:8], "--root", datasets)[0] == 0
    code, out, _ = cli("undo", "sample", "--root", datasets, "--list")
    assert code == 0
    listed = out.splitlines()
    assert [line.split()[0] for line in listed] == ["#3", "#2", "#1"]  # latest first
    code, out, _ = cli("undo", "sample", "--root", datasets)
    assert code == 0 and c[:8] in out and "2 older delete(s) left" in out
    assert store.conversation_path(c).is_file() and not store.conversation_path(b).is_file()
    code, out, _ = cli("undo", "sample", "--root", datasets, "--steps", "2")
    assert code == 0 and out.index(b[:8]) < out.index(a[:8])
    assert all(store.conversation_path(i).is_file() and store.restyled_path(i).is_file() for i in (a, b, c))
    code, _, err = cli("undo", "sample", "--root", datasets)
    assert code == 1 and "nothing to undo: the trash is empty" in err


def test_many_deletes_keep_their_order_across_processes_of_the_same_second(sample: Path) -> None:
    ids = saved(ConversationStore(sample), 12)
    for conv_id in ids:
        ConversationStore(sample).delete([conv_id])  # a fresh store each time, as separate commands
    store = ConversationStore(sample)
    assert [b.seq for b in store.batches()] == list(range(1, 13))
    restored = [store.undo()[0] for _ in ids]
    assert restored == list(reversed(ids))


def test_batches_from_before_the_sequence_are_restored_last(sample: Path) -> None:
    store = ConversationStore(sample)
    old, new = saved(store, 2)
    legacy = sample / "trash" / "20240101-120000-abcdef" / "conversations"
    legacy.mkdir(parents=True)
    os.replace(store.conversation_path(old), legacy / f"{old}.json")
    store.delete([new])
    assert store.undo() == [new]
    assert store.undo() == [old]


async def test_the_apps_undo_uses_the_same_order(tmp_path: Path) -> None:
    root = copy_sample(tmp_path)
    expt = root / "inst-templates" / "sample"
    fake_conversations(expt, 3)
    async with sample_app(root) as (app, pilot, screen):
        table = await review_table(pilot, screen, 3)
        await pilot.press("d")  # c2 (newest first)
        await wait_for(pilot, lambda: table.row_count == 2)
        await pilot.press("d")  # then c1
        await wait_for(pilot, lambda: table.row_count == 1)
        ConversationStore(expt).delete(["c0"])  # and one from the command line, last
        await pilot.press("u")
        await wait_for(pilot, lambda: (expt / "conversations" / "c0.json").is_file())
        assert not (expt / "conversations" / "c1.json").exists()
        assert any("2 older delete(s) left" in n.message for n in app._notifications)
        await pilot.press("u")
        await wait_for(pilot, lambda: (expt / "conversations" / "c1.json").is_file())
        assert not (expt / "conversations" / "c2.json").exists()
        await pilot.press("u")
        await wait_for(pilot, lambda: table.row_count == 3)


# self-healing index, unreadable files -----------------------------------------------------------
def _sql(*statements: str):  # type: ignore[no-untyped-def]
    """Damage the index database with SQL, as a crash, a bad copy or a bug might."""

    def damage(path: Path, conv_id: str) -> None:
        db = sqlite3.connect(path)
        for statement in statements:
            db.execute(statement.replace("ID", conv_id))
        db.commit()
        db.close()

    return damage


def _bytes(make):  # type: ignore[no-untyped-def]
    return lambda path, conv_id: path.write_bytes(make(path.read_bytes()))


@pytest.mark.parametrize(
    "damage",
    [
        _bytes(lambda data: b"not a database at all {"),
        _bytes(lambda data: data[: len(data) // 3]),  # cut short
        _bytes(lambda data: data[:100] + b"\xff" * 400 + data[500:]),  # a scribbled page
        _bytes(lambda data: b""),
        _sql("DROP TABLE conv"),
        _sql("DROP TABLE near"),
        _sql("DROP TABLE meta"),
        _sql("DELETE FROM meta WHERE key = 'generation'"),
        _sql("UPDATE meta SET value = 'old' WHERE key = 'version'"),
        _sql("UPDATE conv SET stamp = 'STAMP' WHERE id = 'ID'"),
        _sql("ALTER TABLE conv RENAME COLUMN turns TO nope"),
        _sql("CREATE TABLE x (a)", "DROP TABLE shard", "ALTER TABLE x RENAME TO shard"),
    ],
)
def test_an_index_of_the_wrong_shape_is_rebuilt(cli, sample: Path, datasets: Path, damage) -> None:  # type: ignore[no-untyped-def]
    store = ConversationStore(sample)
    [conv_id] = saved(store, 1)
    store.list()
    store.index().close()
    index_path = sample / ".convogen" / "index.sqlite"
    assert index_path.is_file()
    damage(index_path, conv_id)
    for args in (("show", "sample"), ("list",), ("show", "sample", conv_id[:8]), ("stats", "sample")):
        code, _out, err = cli(*args, "--root", datasets)
        assert code == 0 and "Traceback" not in err, (args, err)
    assert "1 conversation(s)" in cli("show", "sample", "--root", datasets)[1]
    [row] = ConversationStore(sample).list()
    assert row.id == conv_id and row.turns == 8
    db = sqlite3.connect(index_path)
    assert db.execute("SELECT id, turns FROM conv").fetchall() == [(conv_id, 8)]  # rebuilt in place


def test_a_corrupt_conversation_file_is_listed_and_counted(cli, sample: Path, datasets: Path) -> None:
    store = ConversationStore(sample)
    saved(store, 2)
    bad = sample / "conversations" / "broken.json"
    bad.write_text('{"tweet_id": "9", "conv": "SocBot: cut')
    code, out, _ = cli("show", "sample", "--root", datasets)
    assert code == 0
    assert f"UNREADABLE  {bad}: not valid JSON" in out
    assert "2 conversation(s), 1 unreadable" in out
    code, out, err = cli("list", "--root", datasets)
    assert code == 0 and "1 unreadable" in out and f"unreadable: {bad}" in err
    listing = store.scan()
    assert len(listing.rows) == 2 and [p.file for p in listing.unreadable] == [bad]


async def test_review_lists_an_unreadable_file_with_its_reason(tmp_path: Path) -> None:
    root = copy_sample(tmp_path)
    expt = root / "inst-templates" / "sample"
    fake_conversation(expt, "good", "1", ("distrust", "cynical"), 1_700_000_000.0)
    (expt / "conversations" / "bad.json").write_text("[1, 2]")
    async with sample_app(root) as (_app, pilot, screen):
        await review_table(pilot, screen, 2)
        status = str(screen.query_one("#rev-status", Static).render())
        assert "1 unreadable" in status
        rows = {r.id: r for r in screen.review.rows}
        assert rows["bad"].flags == ["unreadable"] and "holds one JSON object" in rows["bad"].tweet


# a delete while its restyle runs ------------------------------------------------------------------
@pytest.mark.parametrize("empty_trash", [False, True])
def test_a_delete_during_the_restyle_leaves_the_pair_consistent(sample: Path, empty_trash: bool) -> None:
    gate = threading.Event()
    backend = ScriptedBackend(
        [Script("SocBot: a\nUser: b"), Script("SocBot: 🧵\nUser: no", hold_after=1, gate=gate)]
    )
    experiment = load_experiment(sample)
    pipeline = Pipeline(experiment, backend)
    plan = pipeline.plan(seeds_for(experiment).seeds, limit=1, seed=1)
    store = ConversationStore(sample)
    events = []
    for event in pipeline.run(plan.jobs):
        events.append(event)
        if isinstance(event, TokenChunk) and event.phase == "restyle" and not gate.is_set():
            [conv_id] = store.without_twin()
            store.delete([conv_id])  # the user deletes it in the app while it is being restyled
            if empty_trash:
                store.empty_trash()
            gate.set()
    assert isinstance(events[-1], RunFinished)
    assert not list((sample / "restyled-conversations").glob("*.json"))  # no twin without its conversation
    if empty_trash:
        assert [e.message for e in events if isinstance(e, JobFailed)] == [
            f"conversation {conv_id} was deleted for good during its restyle; twin not kept"
        ]
        return
    [done] = [e for e in events if isinstance(e, JobFinished) and e.phase == "restyle"]
    assert done.path.parent.parent.parent == sample / "trash"  # the twin joined it in the trash
    assert store.undo() == [conv_id]
    assert store.conversation_path(conv_id).is_file() and store.restyled_path(conv_id).is_file()


# files for the group --------------------------------------------------------------------------------
def test_files_are_written_with_the_users_umask_and_keep_an_existing_mode(sample: Path) -> None:
    store = ConversationStore(sample)
    old = os.umask(0o002)
    try:
        conv_id = store.save_conversation(record())
    finally:
        os.umask(old)
    path = store.conversation_path(conv_id)
    assert stat.S_IMODE(path.stat().st_mode) == 0o664  # group-readable and writable, as open() would
    path.chmod(0o640)
    store.set_mark(conv_id, "kept")  # rewritten through a temp file: the mode stays
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    old = os.umask(0o077)
    try:
        private = store.save_conversation(record("2"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(store.conversation_path(private).stat().st_mode) == 0o600
