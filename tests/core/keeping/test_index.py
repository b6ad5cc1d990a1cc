"""The listing index per file: near-duplicate groups and diversity kept right as files come, change
and go; the first listing of many files in a process per core gives what one process gives."""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from convogen_tui.core.judging.dialog import dialog_words
from convogen_tui.core.judging.diversity import diversity_of
from convogen_tui.core.judging.stats import index_diversity
from convogen_tui.core.keeping.index import Entry, Index
from convogen_tui.core.keeping.records import Provenance, read_conversation
from convogen_tui.core.keeping.store import POOL_MIN_FILES, ConversationStore, ConversationSummary
from tests.core.keeping.test_store import record

WORDS = [f"word{i}" for i in range(400)]


def conversation(rng: random.Random) -> str:
    def message() -> str:
        return " ".join(rng.choices(WORDS, k=rng.randint(3, 6))) + "."

    return "\n".join(f"SocBot: {message()}\nUser: {message()}" for _ in range(8))


def save(store: ConversationStore, conv: str, tweet_id: str, when: float) -> str:
    rec = record(tweet_id, conv=conv)
    rec.provenance = Provenance(created_at=when)
    return store.save_conversation(rec)


def exact_diversity(store: ConversationStore) -> dict[str, float]:
    texts = [read_conversation(p).conv for p in sorted(store.conv_dir.glob("*.json"))]
    return diversity_of(dialog_words(t) for t in texts).as_dict()


def near(store: ConversationStore) -> dict[str, str]:
    return {row.id: row.near_duplicate_of for row in store.list() if row.near_duplicate_of}


def test_near_duplicate_groups_follow_new_deleted_and_kept_files(tmp_path: Path) -> None:
    rng = random.Random(5)
    store = ConversationStore(tmp_path)
    text = conversation(rng)
    first = save(store, text, "1", 1000.0)
    others = [save(store, conversation(rng), str(i), 1000.0 + i) for i in range(2, 6)]
    assert near(store) == {}
    copy = save(store, text.replace("word1 ", "word2 ", 1), "9", 2000.0)  # nearly the same, later
    assert near(ConversationStore(tmp_path)) == {copy: first}  # a new process sees it too
    assert "near-duplicate" in next(r for r in store.list() if r.id == copy).flags
    third = save(store, text, "10", 3000.0)
    assert near(store) == {copy: first, third: first}
    store.set_mark(copy, "kept")  # the group now keeps the kept one... only if the first is flagged
    assert near(store) == {copy: first, third: first}
    store.delete([first])  # the keeper goes: the group keeps its earliest remaining member
    assert near(store) == {third: copy}
    store.undo()
    assert near(store) == {copy: first, third: first}
    assert all(r.id in {first, copy, third, *others} for r in store.list())


def test_diversity_from_the_index_is_the_files_diversity_after_adds_edits_and_deletes(tmp_path: Path) -> None:
    """Below SKETCH_K distinct n-grams the index's sketches are exact."""
    rng = random.Random(7)
    store = ConversationStore(tmp_path)
    ids = [save(store, conversation(rng), str(i), 1000.0 + i) for i in range(30)]

    def from_index() -> dict[str, float]:
        fresh = ConversationStore(tmp_path)  # another process: only the index
        return index_diversity(fresh, fresh.list()).as_dict()

    assert from_index() == exact_diversity(store)
    store.delete(ids[:3])
    assert from_index() == exact_diversity(store)
    path = store.conversation_path(ids[5])
    edited = read_conversation(path)
    edited.conv = conversation(rng)
    store.save_conversation(edited, ids[5])  # an edit: new words, old ones gone
    store.set_mark(ids[6], "kept")  # a mark: same words
    save(store, conversation(rng), "99", 5000.0)
    assert from_index() == exact_diversity(store)


@pytest.mark.process
def test_the_first_listing_of_many_files_in_processes_matches_one_process(tmp_path: Path) -> None:
    rng = random.Random(11)
    one = tmp_path / "one"
    (one / "conversations").mkdir(parents=True)
    store = ConversationStore(one)
    text, other = conversation(rng), conversation(rng)
    nearly = {10: other, 200: other.replace(".", " word7.", 1), 410: other.replace(".", " word9.", 1)}
    for i in range(POOL_MIN_FILES + 20):
        conv = text if i in (3, 300) else nearly.get(i) or conversation(rng)
        save(store, conv, str(i % 50), 1000.0 + i)
        if i % 100 == 99:
            store.list()  # in steps below POOL_MIN_FILES: read in this process
    single = store.list()
    many = tmp_path / "many"
    shutil.copytree(one / "conversations", many / "conversations")
    pooled = ConversationStore(many).list()  # every file to read at once: a process per core
    assert [r.__dict__ for r in pooled] == [r.__dict__ for r in single]
    assert sum(1 for r in pooled if r.near_duplicate_of) == 3  # one copy, and two of a group of three
    # beyond SKETCH_K distinct n-grams distinct-n is an estimate (about 1.6 % error)
    estimate, exact = index_diversity(ConversationStore(many), pooled).as_dict(), exact_diversity(store)
    assert estimate == pytest.approx(exact, rel=0.06) and estimate["mtld"] == exact["mtld"]


def test_untouched_folders_list_from_the_index_and_a_full_look_sees_an_edit_in_place(tmp_path: Path) -> None:
    """Every write in ConvoGen renames a file into its folder, so folders whose stamps did not move
    hold nothing new: the listing comes from the index alone. A file edited in place (an editor
    writing over it) shows with a full look (r in Review)."""
    store = ConversationStore(tmp_path)
    conv_id = save(store, conversation(random.Random(3)), "1", 1000.0)
    long_ago = time.time() - 60
    os.utime(store.conv_dir, (long_ago, long_ago))  # older than the racy window
    assert [r.tweet_id for r in store.list()] == ["1"]
    path = store.conversation_path(conv_id)
    data = json.loads(path.read_text())
    data["tweet_id"] = "2"
    with path.open("r+") as handle:  # in place: the folder's stamp stays
        handle.write(json.dumps(data))
        handle.truncate()
    assert [r.tweet_id for r in ConversationStore(tmp_path).list()] == ["1"]
    assert [r.tweet_id for r in ConversationStore(tmp_path).scan(full=True).rows] == ["2"]
    save(store, conversation(random.Random(4)), "3", 2000.0)  # a new file moves the folder's stamp
    assert [r.tweet_id for r in ConversationStore(tmp_path).list()] == ["3", "2"]


@dataclass
class WithScores(ConversationSummary):
    """A summary with the fields other work adds per conversation (a version, a judge's scores)."""

    version: int = 0
    scores: dict[str, float] = field(default_factory=dict)
    judged_at: float | None = None


def test_a_new_summary_field_is_one_field_the_index_stores_and_gives_back(tmp_path: Path) -> None:
    summary = WithScores(
        id="a", tweet_id="1", tweet="t", motivation="m", disposition="d", created_at=1.0, turns=8,
        length=10, restyled=True, mark="", flags=["short"], version=3, scores={"stance": 0.5},
    )  # fmt: skip
    index = Index(tmp_path / "index.sqlite", WithScores, "q")
    index.apply([Entry("a", (1, 2, -1, -1, 3, -1), summary, None, 0)], [], {}, 0.7, lambda mark, flags: True)
    [row] = Index(tmp_path / "index.sqlite", WithScores, "q").rows()
    assert row == summary
    assert Index(tmp_path / "index.sqlite", ConversationSummary, "q").rows() == []  # another shape: rebuilt
