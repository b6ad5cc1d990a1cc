"""Conversation store: original keys, atomic files, trash with undo, marks, an index that stays true."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.judging.turns import count_turns
from convogen_tui.core.keeping.records import ConversationRecord, RestyledRecord
from convogen_tui.core.keeping.store import ConversationStore

CONV = "\n".join(f"SocBot: point {i}\nUser: reply {i}" for i in range(8))


def record(
    tweet_id: str = "1", motivation: str = "distrust", disposition: str = "cynical", conv: str = CONV
) -> ConversationRecord:
    return ConversationRecord.model_validate(
        {
            "tweet_id": tweet_id,
            "disposition": "Expects the worst.",
            "motivation": "Does not trust officials.",
            "tweet": "They lie 🙄",
            "conv": conv,
            "persona": {"motivation": motivation, "disposition": disposition},
        }
    )


def restyled(text: str) -> RestyledRecord:
    return RestyledRecord(tweet_id="1", restyled_conv=text)


def test_saved_files_keep_the_original_flat_keys_and_leave_no_temporary(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path)
    conv_id = store.save_conversation(record())
    store.save_restyled(conv_id, restyled("SocBot: hey"))
    data = json.loads((tmp_path / "conversations" / f"{conv_id}.json").read_text())
    assert data["conv"] == CONV and data["tweet"] == "They lie 🙄"
    twin = json.loads((tmp_path / "restyled-conversations" / f"{conv_id}.json").read_text())
    assert twin["restyled_conv"] == "SocBot: hey"
    assert sorted(os.listdir(tmp_path / "conversations")) == [f"{conv_id}.json"]


def test_listing_summarises_turns_persona_and_flags(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path)
    full = store.save_conversation(record())
    short = store.save_conversation(record("2", conv="SocBot: hi\nUser: no"))
    rows = {r.id: r for r in store.list()}
    assert rows[full].turns == 8 and rows[full].persona == "distrust x cynical"
    assert "short" in rows[short].flags and not rows[short].restyled
    assert "no-restyle" not in rows[short].flags  # not restyled yet is a state, not a defect
    assert count_turns("**SocBot:** a\nUser: b") == (1, 1)
    assert count_turns("1. User: a\n2. SocBot (calmly): b\nUsers of the site: c\nSocBotany: no") == (1, 1)


def test_listing_sees_edits_deletions_and_new_files_through_the_index(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path)
    a = store.save_conversation(record("1"))
    store.save_conversation(record("2"))
    assert len(store.list()) == 2
    assert (tmp_path / ".convogen" / "index.sqlite").is_file()
    fresh = ConversationStore(tmp_path)  # a new process reads the index
    fresh.set_mark(a, "flagged")
    (tmp_path / "conversations" / f"{fresh.list()[0].id}.json").unlink()
    fresh.save_conversation(record("3"))
    rows = ConversationStore(tmp_path).list()
    assert len(rows) == 2
    assert {r.tweet_id for r in rows} >= {"3"}


def test_delete_moves_the_pair_to_trash_and_undo_brings_it_back(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path)
    conv_id = store.save_conversation(record())
    store.save_restyled(conv_id, restyled("x"))
    store.delete([conv_id])
    assert store.list() == [] and store.trash_count() == 1
    assert not store.restyled_path(conv_id).exists()
    assert store.undo() == [conv_id]
    assert store.conversation_path(conv_id).is_file() and store.restyled_path(conv_id).is_file()
    assert store.trash_count() == 0
    with pytest.raises(ConvogenError, match="trash is empty"):
        store.undo()


def test_unique_prefix_finds_a_conversation(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path)
    conv_id = store.save_conversation(record())
    assert store.find(conv_id[:6]) == conv_id
    with pytest.raises(ConvogenError, match="matches no conversation"):
        store.find("zzzz")


def test_files_from_the_notebooks_and_unknown_keys_round_trip_unchanged(tmp_path: Path) -> None:
    """A notebook-era file (numeric id, no persona names, extra keys) is read and marked without loss."""
    store = ConversationStore(tmp_path)
    (tmp_path / "conversations").mkdir()
    original = {
        "tweet_id": 1234567890123,
        "disposition": "Expects the worst of people.",
        "motivation": "Does not trust officials.",
        "tweet": "They lie",
        "conv": CONV,
        "annotator": {"name": "ana", "score": 3},
    }
    (tmp_path / "conversations" / "old.json").write_text(json.dumps(original))
    [row] = store.list()
    assert row.tweet_id == "1234567890123" and row.persona == "Does not trust... x Expects the worst..."
    store.set_mark("old", "kept")
    data = json.loads((tmp_path / "conversations" / "old.json").read_text())
    assert data["annotator"] == {"name": "ana", "score": 3}
    assert data["conv"] == CONV and data["review"]["mark"] == "kept"
    assert list(data)[:5] == ["tweet_id", "disposition", "motivation", "tweet", "conv"]


def test_a_record_of_the_wrong_shape_names_the_file_and_the_key(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path)
    (tmp_path / "conversations").mkdir()
    (tmp_path / "conversations" / "bad.json").write_text(json.dumps({"tweet_id": "1", "conv": ["a", "b"]}))
    with pytest.raises(ConvogenError, match=r"bad\.json \[conv\]"):
        store.load("bad")
