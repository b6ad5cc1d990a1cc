"""Near-duplicate conversations within an experiment: MinHash of word 3-gram shingles (datasketch).

Each conversation's signature is computed once, when the store first reads its file, and kept in
the listing index as base64 text; finding pairs then needs no file at all. Candidates come from
LSH banding of the signatures and are confirmed on the estimated Jaccard similarity, so a pair is
reported only when its shingles overlap at least ``threshold``. The later of a pair (by creation
time) is the duplicate, and it names the earlier one.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import numpy as np

from convogen_tui.core.dialog import dialog_words

NUM_PERM = 64
SHINGLE = 3
SCHEME = "affine32"  # datasketch 2 hashing; signatures in an index are only compared within one
MIN_SHINGLES = 5
BAND_ROWS = 4
BANDS = NUM_PERM // BAND_ROWS  # a text this short says too little to call it anyone's duplicate


def signature(conv: str) -> str | None:
    """The MinHash signature of a conversation's word 3-grams, as base64 (None for a tiny text)."""
    return signature_of(dialog_words(conv))


def signature_of(tokens: Sequence[str]) -> str | None:
    """The same from the conversation's words, when the caller has them already."""
    shingles = {" ".join(tokens[i : i + SHINGLE]) for i in range(len(tokens) - SHINGLE + 1)}
    if len(shingles) < MIN_SHINGLES:
        return None
    minhash = _blank().copy()
    minhash.update_batch([s.encode("utf-8") for s in sorted(shingles)])
    return base64.b64encode(minhash.hashvalues.astype("<u4").tobytes()).decode("ascii")


@functools.cache
def _blank():  # type: ignore[no-untyped-def]
    """An empty MinHash with its permutations drawn once (drawing them is most of the cost)."""
    from datasketch import MinHash  # imported on first use: it loads scipy

    return MinHash(num_perm=NUM_PERM, seed=1, scheme=SCHEME)


def _values(sig: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(sig), dtype="<u4")


def similarity(a: str, b: str) -> float:
    """Estimated Jaccard similarity of two signatures' shingle sets."""
    return float(np.mean(_values(a) == _values(b)))


@dataclass(frozen=True)
class Item:
    id: str
    created_at: float
    sig: str | None


def find_near_duplicates(
    items: Sequence[Item], threshold: float, preferred: AbstractSet[str] = frozenset()
) -> dict[str, tuple[str, float]]:
    """duplicate id -> (the conversation it repeats, similarity).

    Candidates share one band of BAND_ROWS signature values (LSH banding: with 16 bands of 4, pairs
    above ~0.5 similarity almost always meet), then the estimated similarity decides. Conversations
    linked by such pairs form a group; the group keeps its earliest conversation, or its earliest
    ``preferred`` one (clean or kept) when there is one, and every other member is a duplicate of it.
    So the later of a pair is flagged, unless only the later one is worth keeping.
    """
    order = sorted((item for item in items if item.sig), key=lambda item: (item.created_at, item.id))
    parent: dict[str, str] = {}

    def root(conv_id: str) -> str:
        while parent[conv_id] != conv_id:
            parent[conv_id] = parent[parent[conv_id]]
            conv_id = parent[conv_id]
        return conv_id

    buckets: dict[bytes, list[int]] = {}
    values: dict[str, np.ndarray] = {}
    for index, item in enumerate(order):
        assert item.sig is not None
        own = values[item.id] = _values(item.sig)
        parent[item.id] = item.id
        keys = [
            bytes([band]) + own[band * BAND_ROWS : (band + 1) * BAND_ROWS].tobytes() for band in range(BANDS)
        ]
        candidates = {other for key in keys for other in buckets.get(key, ())}
        for other in candidates:
            earlier = order[other].id
            if root(earlier) != root(item.id) and float(np.mean(own == values[earlier])) >= threshold:
                parent[root(item.id)] = root(earlier)
        for key in keys:
            bucket = buckets.setdefault(key, [])
            if not bucket or root(order[bucket[-1]].id) != root(item.id):  # one per group is enough
                bucket.append(index)
    groups: dict[str, list[str]] = {}
    for item in order:  # in time order, so each group's list is too
        groups.setdefault(root(item.id), []).append(item.id)
    found: dict[str, tuple[str, float]] = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        keeper = next((m for m in members if m in preferred), members[0])
        for member in members:
            if member != keeper:
                found[member] = (keeper, float(np.mean(values[member] == values[keeper])))
    return found
