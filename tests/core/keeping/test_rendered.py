"""`convogen show`'s lines kept beside the index: whatever changed between two listings (a new
file, a mark, a delete, a near-duplicate, a judgment, a damaged cache), the kept listing is the
listing made from scratch."""

from __future__ import annotations

import random
from pathlib import Path

from convogen_tui.core.keeping.records import JudgmentRecord
from convogen_tui.core.keeping.store import ConversationStore
from tests.core.keeping.test_index import conversation, save


def show(cli, datasets: Path) -> str:  # type: ignore[no-untyped-def]
    code, out, err = cli("show", "sample", "--root", datasets)
    assert code == 0, err
    return out


def fresh(cli, datasets: Path, cache: Path) -> str:  # type: ignore[no-untyped-def]
    """The listing with nothing kept: what the kept one must equal."""
    cache.unlink(missing_ok=True)
    return show(cli, datasets)


def line_of(out: str, conv_id: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(conv_id[:8]))


def test_the_kept_listing_is_the_fresh_listing_after_every_kind_of_change(cli, sample, datasets) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    store = ConversationStore(sample)
    ids = [save(store, conversation(rng), str(i), 1000.0 + i * 60) for i in range(30)]
    cache = sample / ".convogen" / "show.lines.json"
    first = show(cli, datasets)
    assert cache.is_file() and first.count("\n") == 31
    assert show(cli, datasets) == first  # nothing changed: the kept lines as they are

    newest = save(store, conversation(rng), "77", 9000.0)
    after_new = show(cli, datasets)
    assert after_new.splitlines()[0].startswith(newest[:8]) and "31 conversation(s)" in after_new
    assert after_new == fresh(cli, datasets, cache)

    store.set_mark(ids[5], "kept")
    store.delete([ids[9]])
    changed = show(cli, datasets)
    assert " kept" in line_of(changed, ids[5]) and ids[9][:8] not in changed
    assert changed == fresh(cli, datasets, cache)

    copy = save(store, store.load(ids[12])[0].conv, "78", 9500.0)  # the same words, later
    with_copy = show(cli, datasets)
    assert "near-duplicate" in line_of(with_copy, copy)
    assert with_copy == fresh(cli, datasets, cache)

    store.save_judgment(ids[3], JudgmentRecord(scores={"stance": 2}, rationale="fine"))
    judged = show(cli, datasets)
    assert "judge=2" in line_of(judged, ids[3])
    assert judged == fresh(cli, datasets, cache)

    cache.write_text('{"version": 1, "key": "x", "generation": "not a number"')  # damaged: ignored
    assert show(cli, datasets) == judged
