"""Lexical diversity of an experiment: distinct-1, distinct-2 (Li et al. 2016) and MTLD (McCarthy &
Jarvis 2010), the measure Microsoft's ConvoGen reports for its synthetic dialogs.

distinct-n is corpus-wide: distinct n-grams over all n-grams of all conversations, so conversations
that say the same things lower it. MTLD is computed per conversation (it is a per-text measure) and
averaged. Words are the messages' words, lower-cased, labels and notes left out
(:func:`convogen_tui.core.judging.dialog.dialog_words`).

Over a whole experiment distinct-n is counted with bottom-k (K-minimum-values) sketches of 64-bit
n-gram hashes (:class:`DiversitySketch`): exact up to SKETCH_K distinct n-grams, within about 1.6 %
beyond, in bounded memory, and mergeable, so the listing index keeps one sketch per shard of
conversations and stats never reads the texts again.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

MTLD_THRESHOLD = 0.72


def mtld(tokens: Sequence[str], threshold: float = MTLD_THRESHOLD) -> float:
    """Measure of textual lexical diversity: the mean length of word runs that keep their type-token
    ratio above ``threshold``, averaged over a forward and a backward pass. 0 for an empty text."""
    if not tokens:
        return 0.0
    return (_mtld_pass(tokens, threshold) + _mtld_pass(tokens[::-1], threshold)) / 2


def _mtld_pass(tokens: Sequence[str], threshold: float) -> float:
    factors = 0.0
    types: set[str] = set()
    count = 0
    ttr = 1.0
    for token in tokens:
        count += 1
        types.add(token)
        ttr = len(types) / count
        if ttr <= threshold:
            factors += 1
            types, count = set(), 0
    if count > 0:  # the unfinished run counts as the fraction of a factor it reached
        factors += (1 - ttr) / (1 - threshold)
    if factors == 0:  # the whole text never fell below the threshold
        whole = len(set(tokens)) / len(tokens)
        factors = 1.0 if whole == 1 else (1 - whole) / (1 - threshold)
    return len(tokens) / factors


@dataclass
class Diversity:
    """Corpus-wide distinct-1/2 and the mean per-conversation MTLD, built one conversation at a time."""

    unigrams: set[str] = field(default_factory=set)
    bigrams: set[tuple[str, str]] = field(default_factory=set)
    n_unigrams: int = 0
    n_bigrams: int = 0
    mtld_sum: float = 0.0
    texts: int = 0

    def add(self, tokens: Sequence[str], text_mtld: float | None = None) -> None:
        """One conversation's words (its MTLD is computed unless given, e.g. from the index)."""
        self.unigrams.update(tokens)
        self.n_unigrams += len(tokens)
        pairs = list(itertools.pairwise(tokens))
        self.bigrams.update(pairs)
        self.n_bigrams += len(pairs)
        if tokens:
            self.mtld_sum += mtld(tokens) if text_mtld is None else text_mtld
            self.texts += 1

    @property
    def distinct_1(self) -> float:
        return len(self.unigrams) / self.n_unigrams if self.n_unigrams else 0.0

    @property
    def distinct_2(self) -> float:
        return len(self.bigrams) / self.n_bigrams if self.n_bigrams else 0.0

    @property
    def mtld(self) -> float:
        return self.mtld_sum / self.texts if self.texts else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "distinct_1": round(self.distinct_1, 4),
            "distinct_2": round(self.distinct_2, 4),
            "mtld": round(self.mtld, 2),
        }


def diversity_of(token_lists: Iterable[Sequence[str]]) -> Diversity:
    out = Diversity()
    for tokens in token_lists:
        out.add(tokens)
    return out


# sketches: distinct-n over 100,000 conversations without holding every n-gram ----------------
SKETCH_K = 4096  # exact below this many distinct n-grams; above, about 1/sqrt(K) = 1.6 % error
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads any 64-bit values uniformly (wrapping arithmetic, as meant)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def gram_hashes(tokens: Sequence[str], crcs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of a text's words and of its word pairs (the n-grams distinct-1/2 count).
    ``crcs``: the words' CRC-32s (:func:`word_crcs`), when the caller has them already."""
    if not tokens:
        empty = np.zeros(0, dtype=np.uint64)
        return empty, empty
    encoded = [w.encode("utf-8") for w in tokens]
    if crcs is None:
        crcs = np.fromiter(map(zlib.crc32, encoded), dtype=np.uint64, count=len(tokens))
    adlers = np.fromiter(map(zlib.adler32, encoded), dtype=np.uint64, count=len(tokens))
    words = (crcs << np.uint64(32)) | adlers
    return _mix(words), _mix(words[:-1] * _GOLDEN + _mix(words[1:]))


def word_crcs(tokens: Sequence[str]) -> np.ndarray:
    """The words' CRC-32s, as the shingles (``neardup``) and the n-gram hashes here both use them."""
    encoded = (w.encode("utf-8") for w in tokens)
    return np.fromiter(map(zlib.crc32, encoded), dtype=np.uint64, count=len(tokens))


def bottom_k(*arrays: np.ndarray, k: int = SKETCH_K) -> np.ndarray:
    """The k smallest distinct values of the arrays together (a K-minimum-values sketch: merging
    sketches this way gives the sketch of the union)."""
    if not arrays:
        return np.zeros(0, dtype=np.uint64)
    values = np.sort(np.concatenate(arrays))  # a sort and a shift: numpy's hashing unique is slower here
    if len(values) > 1:
        values = values[np.concatenate(([True], values[1:] != values[:-1]))]
    return values[:k]


def distinct_estimate(sketch: np.ndarray, k: int = SKETCH_K) -> float:
    """Distinct values behind a bottom-k sketch: exact when it holds fewer than k, else (k-1)/kth."""
    if len(sketch) < k:
        return float(len(sketch))
    return (k - 1) / (float(sketch[k - 1]) / 2.0**64)


@dataclass
class DiversitySketch:
    """:class:`Diversity` in bounded memory: distinct-n counted through bottom-k sketches, so a
    stream of 100,000 conversations (an export, the listing index) never holds their n-grams."""

    unigrams: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    bigrams: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    n_unigrams: int = 0
    n_bigrams: int = 0
    mtld_sum: float = 0.0
    texts: int = 0
    _pending: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)

    def add(self, tokens: Sequence[str], text_mtld: float | None = None) -> None:
        self.add_hashes(*gram_hashes(tokens))
        if tokens:
            self.mtld_sum += mtld(tokens) if text_mtld is None else text_mtld
            self.texts += 1

    def add_hashes(self, unigrams: np.ndarray, bigrams: np.ndarray) -> None:
        self.n_unigrams += len(unigrams)
        self.n_bigrams += len(bigrams)
        self._pending.append((unigrams, bigrams))
        if len(self._pending) >= 256:
            self._fold()

    def merge(self, other: DiversitySketch) -> None:
        """Add another sketch's conversations (sketches of two sets merge into the union's)."""
        self._fold()
        other._fold()
        self.unigrams = bottom_k(self.unigrams, other.unigrams)
        self.bigrams = bottom_k(self.bigrams, other.bigrams)
        self.n_unigrams += other.n_unigrams
        self.n_bigrams += other.n_bigrams
        self.mtld_sum += other.mtld_sum
        self.texts += other.texts

    def _fold(self) -> None:
        if self._pending:
            self.unigrams = bottom_k(self.unigrams, *(u for u, _ in self._pending))
            self.bigrams = bottom_k(self.bigrams, *(b for _, b in self._pending))
            self._pending.clear()

    @property
    def distinct_1(self) -> float:
        self._fold()
        return distinct_estimate(self.unigrams) / self.n_unigrams if self.n_unigrams else 0.0

    @property
    def distinct_2(self) -> float:
        self._fold()
        return distinct_estimate(self.bigrams) / self.n_bigrams if self.n_bigrams else 0.0

    @property
    def mtld(self) -> float:
        return self.mtld_sum / self.texts if self.texts else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "distinct_1": round(min(self.distinct_1, 1.0), 4),
            "distinct_2": round(min(self.distinct_2, 1.0), 4),
            "mtld": round(self.mtld, 2),
        }
