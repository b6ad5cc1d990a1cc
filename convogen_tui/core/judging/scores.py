"""The judge's scores as an experiment's figures: per criterion mean, n and histogram, and the
calibration against the reviewer (``convogen stats --json``, the Stats screen)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from convogen_tui.core.judging.calibration import calibrate
from convogen_tui.core.judging.judge import current_keys, is_stale
from convogen_tui.core.keeping.records import JudgmentRecord
from convogen_tui.core.keeping.store import ConversationSummary
from convogen_tui.core.making.experiment import Experiment


def judge_stats(
    experiment: Experiment, rows: Sequence[ConversationSummary], judgments: Mapping[str, JudgmentRecord]
) -> dict[str, Any]:
    """``stats --json``'s judge keys for the listed conversations: ``judge`` ({criterion: {mean, n,
    histogram}}), ``judgments`` (judged, failed, stale, scale) and ``calibration``; all None when
    the experiment has no judge criteria."""
    if experiment.setup is None or experiment.setup.judge is None:
        return {"judge": None, "judgments": None, "calibration": None}
    settings = experiment.setup.judge
    low, high = settings.scale
    listed = [judgments[row.id] for row in rows if row.id in judgments]
    scored = [j for j in listed if not j.failed]
    keys = current_keys(experiment)
    criteria: dict[str, Any] = {}
    for name in settings.names:
        values = [j.scores[name] for j in scored if name in j.scores]
        histogram = {str(score): 0 for score in range(low, high + 1)}
        for value in values:
            histogram[str(value)] = histogram.get(str(value), 0) + 1
        criteria[name] = {
            "mean": round(statistics.fmean(values), 3) if values else None,
            "n": len(values),
            "histogram": histogram,
        }
    counts = {
        "judged": len(listed),
        "failed": len(listed) - len(scored),
        "stale": sum(is_stale(j, keys) for j in listed),
        "scale": [low, high],
    }
    calibration = calibrate(rows, judgments, settings.names).to_json()
    return {"judge": criteria, "judgments": counts, "calibration": calibration}


def lowest_scores(judgments: Mapping[str, JudgmentRecord]) -> dict[str, int]:
    """Each judged conversation's lowest score (the Review column), judge-failed ones left out."""
    return {conv_id: j.lowest for conv_id, j in judgments.items() if j.lowest is not None}


def cell_means(
    rows: Sequence[ConversationSummary], judgments: Mapping[str, JudgmentRecord], criterion: str
) -> dict[tuple[str, str, str], float]:
    """Mean score on ``criterion`` per seed x persona cell ((tweet id, motivation, disposition)),
    for the coverage heat map: which personas the model cannot play."""
    values: dict[tuple[str, str, str], list[int]] = {}
    for row in rows:
        judgment = judgments.get(row.id)
        if judgment is not None and not judgment.failed and criterion in judgment.scores:
            values.setdefault(row.key, []).append(judgment.scores[criterion])
    return {key: statistics.fmean(scores) for key, scores in values.items()}
