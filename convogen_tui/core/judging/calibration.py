"""The judge against the reviewer: how well its scores separate conversations kept from flagged.

For each criterion, and for the mean of the criteria, the judge "says kept" when the score is at
least a threshold. The threshold chosen is the one with the best accuracy on the reviewer's marks
(ties: the better Cohen's kappa, then the lower threshold); beside it, kappa, the confusion matrix
(rows: the reviewer's mark, columns: what the judge says) and n. Few marks say nothing, and the
report says so in a plain sentence instead of printing numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from convogen_tui.core.keeping.records import JudgmentRecord

MIN_MARKED = 6  # judged conversations the reviewer marked kept or flagged
MIN_EACH = 2  # of each mark
LABELS = ("kept", "flagged")
HEADS = ("K->K", "K->F", "F->K", "F->F")  # reviewer's mark -> judge's call


class Marked(Protocol):
    id: str
    mark: str


@dataclass(frozen=True)
class Separation:
    """One score (a criterion, or the mean) as a kept/flagged test at its best threshold."""

    name: str
    n: int
    threshold: float
    accuracy: float
    kappa: float
    confusion: dict[str, dict[str, int]]  # reviewer's mark -> judge's call -> count

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "threshold": self.threshold,
            "accuracy": round(self.accuracy, 4),
            "kappa": round(self.kappa, 4),
            "confusion": self.confusion,
        }


@dataclass
class Calibration:
    n: int = 0
    kept: int = 0
    flagged: int = 0
    criteria: list[Separation] = field(default_factory=list)
    mean: Separation | None = None
    note: str | None = None  # why there are no figures (too few marks)

    @property
    def enough(self) -> bool:
        return self.note is None

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "kept": self.kept,
            "flagged": self.flagged,
            "enough": self.enough,
            "note": self.note,
            "rule": "the judge says kept when score >= threshold; confusion rows: reviewer, columns: judge",
            "criteria": {s.name: s.to_json() for s in self.criteria},
            "mean": self.mean.to_json() if self.mean else None,
        }


def cohen_kappa(confusion: Mapping[str, Mapping[str, int]]) -> float:
    """Agreement beyond chance between the reviewer (rows) and the judge (columns)."""
    n = sum(sum(row.values()) for row in confusion.values())
    if n == 0:
        return 0.0
    observed = sum(confusion[label][label] for label in LABELS) / n
    expected = sum(
        (sum(confusion[label].values()) / n) * (sum(confusion[row][label] for row in LABELS) / n)
        for label in LABELS
    )
    return 0.0 if expected >= 1 else (observed - expected) / (1 - expected)


def separation(name: str, scored: Sequence[tuple[float, str]]) -> Separation:
    """The best threshold for ``scored`` (score, reviewer's mark) pairs, with its figures."""
    best: Separation | None = None
    for threshold in sorted({score for score, _ in scored}):
        confusion = {mark: dict.fromkeys(LABELS, 0) for mark in LABELS}
        for score, mark in scored:
            confusion[mark]["kept" if score >= threshold else "flagged"] += 1
        accuracy = (confusion["kept"]["kept"] + confusion["flagged"]["flagged"]) / len(scored)
        candidate = Separation(name, len(scored), threshold, accuracy, cohen_kappa(confusion), confusion)
        if best is None or (candidate.accuracy, candidate.kappa) > (best.accuracy, best.kappa):
            best = candidate
    assert best is not None  # callers pass at least one pair
    return best


def calibrate(
    rows: Iterable[Marked], judgments: Mapping[str, JudgmentRecord], criteria: Sequence[str]
) -> Calibration:
    """The judge against the marks of ``rows`` (listing rows), for conversations it judged."""
    marked = [
        (row.mark, judgments[row.id])
        for row in rows
        if row.mark in LABELS and row.id in judgments and not judgments[row.id].failed
    ]
    marked = [(mark, j) for mark, j in marked if all(name in j.scores for name in criteria)]
    report = Calibration(
        len(marked), sum(m == "kept" for m, _ in marked), sum(m == "flagged" for m, _ in marked)
    )
    if report.n < MIN_MARKED or min(report.kept, report.flagged) < MIN_EACH:
        report.note = (
            f"Too few marks to calibrate the judge: {report.n} judged conversation(s) are marked "
            f"({report.kept} kept, {report.flagged} flagged). Mark at least {MIN_MARKED}, with "
            f"{MIN_EACH} or more of each, in Review (o keep, f flag) or with convogen mark."
        )
        return report
    for name in criteria:
        report.criteria.append(separation(name, [(float(j.scores[name]), m) for m, j in marked]))
    means = [(round(sum(j.scores[c] for c in criteria) / len(criteria), 2), m) for m, j in marked]
    report.mean = separation("mean", means)
    return report


def agreement(kappa: float) -> str:
    """Landis and Koch's words for a kappa, as a researcher would say it."""
    for bound, words in ((0.8, "almost perfect"), (0.6, "substantial"), (0.4, "moderate"), (0.2, "fair")):
        if kappa > bound:
            return words
    return "slight or none"


def describe_calibration(report: Calibration) -> str:
    """The report as text: a sentence when there are too few marks, else a table and a verdict."""
    if report.note is not None:
        return report.note
    lines = [
        f"Judge vs reviewer on {report.n} marked conversations "
        f"({report.kept} kept, {report.flagged} flagged);",
        "the judge says kept when score >= threshold. Confusion: reviewer kept->judge kept/flagged, "
        "flagged->kept/flagged.",
        f"{'criterion':<18} {'thr':>5} {'acc':>5} {'kappa':>6}  " + " ".join(f"{h:>4}" for h in HEADS),
    ]
    assert report.mean is not None
    for s in [*report.criteria, report.mean]:
        c = s.confusion
        lines.append(
            f"{s.name:<18} {s.threshold:>5g} {s.accuracy:>5.2f} {s.kappa:>6.2f}  "
            + " ".join(f"{c[mark][call]:>4}" for mark in LABELS for call in LABELS)
        )
    best = max(report.criteria, key=lambda s: s.kappa)
    lines.append(
        f"Best: {best.name} (kappa {best.kappa:.2f}, {agreement(best.kappa)} agreement); "
        f"mean score: kappa {report.mean.kappa:.2f}, {agreement(report.mean.kappa)}."
    )
    return "\n".join(lines)
