"""Near-duplicate conversations within an experiment: MinHash of word 3-gram shingles (datasketch).

Each conversation's signature is computed once, when the store first reads its file, and kept in
the listing index as base64 text; finding pairs then needs no file at all. Candidates come from
LSH banding of the signatures and are confirmed on the estimated Jaccard similarity, so a pair is
reported only when its shingles overlap at least ``threshold``. The later of a pair (by creation
time) is the duplicate, and it names the earlier one.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
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
    tokens = dialog_words(conv)
    shingles = {" ".join(tokens[i : i + SHINGLE]) for i in range(len(tokens) - SHINGLE + 1)}
    if len(shingles) < MIN_SHINGLES:
        return None
    from datasketch import MinHash  # imported on first use: it loads scipy

    minhash = MinHash(num_perm=NUM_PERM, seed=1, scheme=SCHEME)
    minhash.update_batch([s.encode("utf-8") for s in sorted(shingles)])
    return base64.b64encode(minhash.hashvalues.astype("<u4").tobytes()).decode("ascii")


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


def find_near_duplicates(items: Sequence[Item], threshold: float) -> dict[str, tuple[str, float]]:
    """duplicate id -> (the earlier conversation it repeats, similarity), for every later one of a pair.

    Candidates share one band of BAND_ROWS signature values (LSH banding: with 16 bands of 4, pairs
    above ~0.5 similarity almost always meet), then the estimated similarity decides.
    """
    order = sorted((item for item in items if item.sig), key=lambda item: (item.created_at, item.id))
    found: dict[str, tuple[str, float]] = {}
    first_with: dict[str, str] = {}  # identical signatures: the earliest holder
    buckets: dict[bytes, list[int]] = {}
    values: list[np.ndarray] = []
    kept: list[str] = []
    for item in order:
        assert item.sig is not None
        if item.sig in first_with:
            found[item.id] = (first_with[item.sig], 1.0)
            continue
        first_with[item.sig] = item.id
        own = _values(item.sig)
        keys = [
            bytes([band]) + own[band * BAND_ROWS : (band + 1) * BAND_ROWS].tobytes() for band in range(BANDS)
        ]
        candidates = {index for key in keys for index in buckets.get(key, ())}
        best: tuple[str, float] | None = None
        for index in sorted(candidates):
            score = float(np.mean(own == values[index]))
            if score >= threshold and (best is None or score > best[1]):
                best = (kept[index], score)
        if best is not None:
            found[item.id] = best
        for key in keys:
            buckets.setdefault(key, []).append(len(kept))
        values.append(own)
        kept.append(item.id)
    return found
