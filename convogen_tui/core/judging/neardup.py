"""Near-duplicate conversations within an experiment: MinHash of word 3-gram shingles.

The MinHash is a few lines of numpy here rather than datasketch's, whose import loads SciPy (most
of a second) in every process that lists a new file; shingles are hashed from the words' CRC-32s
in numpy, not one string at a time.

Each conversation's signature is computed once, when the store first reads its file, and kept in
the listing index as base64 text; finding pairs then needs no file at all. Candidates come from
LSH banding of the signatures (:func:`band_keys`: with 16 bands of 4, pairs above ~0.5 similarity
almost always share one) and are confirmed on the estimated Jaccard similarity, so a pair is
reported only when its shingles overlap at least ``threshold``. The index links such pairs into
groups; a group keeps its earliest conversation (its earliest clean or kept one, if there is one)
and every other member is its duplicate (``core.keeping.index``).
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Sequence
from collections.abc import Set as AbstractSet

import numpy as np

from convogen_tui.core.judging.diversity import word_crcs

NUM_PERM = 64
SHINGLE = 3
MIN_SHINGLES = 5  # a text this short says too little to call it anyone's duplicate
BAND_ROWS = 4
BANDS = NUM_PERM // BAND_ROWS


def signature_of(tokens: Sequence[str], crcs: np.ndarray | None = None) -> str | None:
    """The MinHash signature of a conversation's word 3-grams (``dialog_words``), as base64; None
    for a tiny text. ``crcs``: the words' CRC-32s, when the caller has them already."""
    if len(tokens) < SHINGLE:
        return None
    words = word_crcs(tokens) if crcs is None else crcs
    mixed = (words[:-2] * _MIX1 + words[1:-1]) * _MIX2 + words[2:]  # wraps modulo 2**64, as meant
    shingles = np.unique((mixed ^ (mixed >> np.uint64(29))) & _LOW32)
    if len(shingles) < MIN_SHINGLES:
        return None
    return base64.b64encode(_minhash(shingles).astype("<u4").tobytes()).decode("ascii")


_PRIME = (1 << 61) - 1
_rng = np.random.default_rng(20240611)  # fixed: signatures in an index must stay comparable
_A = _rng.integers(1, 1 << 32, NUM_PERM, dtype=np.uint64)
_B = _rng.integers(0, 1 << 32, NUM_PERM, dtype=np.uint64)
_MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F)
_LOW32 = np.uint64(0xFFFFFFFF)


def minhash(items: AbstractSet[str]) -> np.ndarray:
    """NUM_PERM minima of universal hashes ``(a*h + b) mod p`` (32 bits) over the items' CRC-32 (a
    MinHash): two sets agree on a position with probability equal to their Jaccard similarity."""
    return _minhash(np.fromiter((zlib.crc32(i.encode("utf-8")) for i in items), dtype=np.uint64))


def _minhash(hashes: np.ndarray) -> np.ndarray:
    """a, b and h are below 2**32, so ``a*h + b`` fits in 64 bits without overflow."""
    return (((hashes[:, None] * _A + _B) % _PRIME) & 0xFFFFFFFF).min(axis=0).astype(np.uint32)


def band_keys(sig: str) -> list[bytes]:
    """The signature's LSH bands (BANDS keys of BAND_ROWS values): two conversations that share a
    key are candidates."""
    own = _values(sig)
    return [bytes([band]) + own[band * BAND_ROWS : (band + 1) * BAND_ROWS].tobytes() for band in range(BANDS)]


def _values(sig: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(sig), dtype="<u4")


def similarity(a: str, b: str) -> float:
    """Estimated Jaccard similarity of two signatures' shingle sets."""
    return float(np.mean(_values(a) == _values(b)))


def candidate_pairs(sigs: Sequence[str]) -> list[tuple[int, int]]:
    """Index pairs (i < j) of signatures that share an LSH band (what :func:`band_keys` makes),
    found in one sort instead of one lookup per signature: the first listing of a big experiment."""
    if len(sigs) < 2:
        return []
    values = np.frombuffer(b"".join(base64.b64decode(s) for s in sigs), dtype="<u4")
    bands = values.reshape(len(sigs), BANDS, BAND_ROWS)
    hashed = np.broadcast_to(np.arange(BANDS, dtype=np.uint64), bands.shape[:2]).copy()
    for row in range(BAND_ROWS):  # a 64-bit hash of (band, its values); equal keys hash equal
        hashed = (hashed * _MIX1 + bands[:, :, row].astype(np.uint64)) * _MIX2
        hashed ^= hashed >> np.uint64(29)
    flat = hashed.ravel()
    order = np.argsort(flat, kind="stable")
    ranked = flat[order]
    starts = np.flatnonzero(np.concatenate(([True], ranked[1:] != ranked[:-1], [True])))
    pairs: set[tuple[int, int]] = set()
    for run in np.flatnonzero(np.diff(starts) >= 2):  # keys held by two or more: few
        start, end = starts[run], starts[run + 1]
        members = sorted({int(k) // BANDS for k in order[start:end]})
        band = int(order[start]) % BANDS
        for x, i in enumerate(members):
            for j in members[x + 1 :]:
                if np.array_equal(bands[i, band], bands[j, band]):  # the same key, not a hash collision
                    pairs.add((i, j))
    return sorted(pairs)
