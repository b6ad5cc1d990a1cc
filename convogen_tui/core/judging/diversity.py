"""Lexical diversity of an experiment: distinct-1, distinct-2 (Li et al. 2016) and MTLD (McCarthy &
Jarvis 2010), the measure Microsoft's ConvoGen reports for its synthetic dialogs.

distinct-n is corpus-wide: distinct n-grams over all n-grams of all conversations, so conversations
that say the same things lower it. MTLD is computed per conversation (it is a per-text measure) and
averaged. Words are the messages' words, lower-cased, labels and notes left out
(:func:`convogen_tui.core.judging.dialog.dialog_words`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

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
