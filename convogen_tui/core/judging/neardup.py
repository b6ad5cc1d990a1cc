"""Near-duplicate conversations within an experiment: MinHash of word 3-gram shingles.

The MinHash is a few lines of numpy here rather than datasketch's, whose import loads SciPy (most
of a second) in every process that lists a new file.

Each conversation's signature is computed once, when the store first reads its file, and kept in
the listing index as base64 text; finding pairs then needs no file at all. Candidates come from
LSH banding of the signatures and are confirmed on the estimated Jaccard similarity, so a pair is
reported only when its shingles overlap at least ``threshold``. The later of a pair (by creation
time) is the duplicate, and it names the earlier one (see :func:`find_near_duplicates`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import numpy as np

NUM_PERM = 64
SHINGLE = 3
MIN_SHINGLES = 5  # a text this short says too little to call it anyone's duplicate
BAND_ROWS = 4
BANDS = NUM_PERM // BAND_ROWS


def signature_of(tokens: Sequence[str]) -> str | None:
    """The MinHash signature of a conversation's word 3-grams (``dialog_words``), as base64; None
    for a tiny text."""
    shingles = {" ".join(tokens[i : i + SHINGLE]) for i in range(len(tokens) - SHINGLE + 1)}
    if len(shingles) < MIN_SHINGLES:
        return None
    return base64.b64encode(minhash(shingles).astype("<u4").tobytes()).decode("ascii")


_PRIME = (1 << 61) - 1
_rng = np.random.default_rng(20240611)  # fixed: signatures in an index must stay comparable
_A = _rng.integers(1, 1 << 32, NUM_PERM, dtype=np.uint64)
_B = _rng.integers(0, 1 << 32, NUM_PERM, dtype=np.uint64)


def minhash(items: AbstractSet[str]) -> np.ndarray:
    """NUM_PERM minima of universal hashes ``(a*h + b) mod p`` (32 bits) over the items' SHA-1 (a
    MinHash): two sets agree on a position with probability equal to their Jaccard similarity.
    a, b and h are below 2**32, so ``a*h + b`` fits in 64 bits without overflow."""
    hashes = np.array(
        [int.from_bytes(hashlib.sha1(item.encode("utf-8")).digest()[:4], "little") for item in items],
        dtype=np.uint64,
    )
    return (((hashes[:, None] * _A + _B) % _PRIME) & 0xFFFFFFFF).min(axis=0).astype(np.uint32)


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
