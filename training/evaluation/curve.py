"""The recall / alert-rate curve: what each alert budget would buy, for the bank to choose.

For each candidate alert rate r, the review threshold is the one a budget of r would give on the
validation scores (the highest score flagging at most r of the validation transactions, as the
thresholds rule does for the cap), carried to the final model as the thresholds are: raised when
that model would alert on more than r of the recent days before the test (training.model.
thresholds.cap_on_recent). The curve then reads what each threshold achieved on the test period,
overall and per fraud scenario. Nothing here looks at test labels to set a threshold, so the
test columns are an honest forecast of choosing that budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

DEFAULT_ALERT_RATES = (0.005, 0.01, 0.02, 0.03, 0.05, 0.1)


def threshold_for_alert_rate(scores: npt.ArrayLike, rate: float) -> float:
    """The lowest observed score whose set (score >= it) holds at most `rate` of the rows;
    inf when even the highest score's ties exceed it."""
    ordered = np.sort(np.asarray(scores, dtype=float))[::-1]
    budget = int(np.floor(rate * ordered.size + 1e-9))
    if budget < 1:
        return float("inf")
    candidate = ordered[budget - 1]
    if budget < ordered.size and ordered[budget] == candidate:
        # Ties straddle the budget: the next higher score keeps within it.
        higher = ordered[ordered > candidate]
        return float(higher[-1]) if higher.size else float("inf")
    return float(candidate)


def _recall(labels: npt.NDArray[np.int64], flagged: npt.NDArray[np.bool_]) -> float | None:
    positives = int(labels.sum())
    return float(labels[flagged].sum() / positives) if positives else None


def alert_rate_curve(
    validation_scores: npt.ArrayLike,
    validation_labels: npt.ArrayLike,
    test_scores: npt.ArrayLike,
    test: pd.DataFrame,
    rates: Sequence[float] = DEFAULT_ALERT_RATES,
    recent_scores: npt.ArrayLike | None = None,
) -> list[dict[str, Any]]:
    """One row per alert rate: its threshold, validation recall (of the validation threshold),
    test alert rate and recall, and test recall per fraud scenario (when `test` has
    `fraud_scenario`). `recent_scores`: the final model's scores of the days before the test,
    when its thresholds are carried from other models' validation scores."""
    recent = np.asarray(recent_scores if recent_scores is not None else [], dtype=float)
    val_scores = np.asarray(validation_scores, dtype=float)
    val_labels = np.asarray(validation_labels, dtype=np.int64)
    scores = np.asarray(test_scores, dtype=float)
    labels = test["is_fraud"].to_numpy(dtype=np.int64)
    scenarios = (
        test["fraud_scenario"].astype("string").fillna("").to_numpy()
        if "fraud_scenario" in test.columns
        else np.full(len(test), "")
    )
    names = sorted({name for name in scenarios[labels == 1] if name})
    rows = []
    for rate in rates:
        chosen = threshold_for_alert_rate(val_scores, rate)
        threshold = chosen
        if recent.size and (recent >= chosen).mean() > rate:
            threshold = max(chosen, threshold_for_alert_rate(recent, rate))
        flagged = scores >= threshold
        rows.append(
            {
                "alert_rate_budget": rate,
                "review_threshold": threshold,
                "validation_recall": _recall(val_labels, val_scores >= chosen),
                "test_alert_rate": float(flagged.mean()) if flagged.size else None,
                "test_recall": _recall(labels, flagged),
                "test_recall_by_scenario": {
                    name: float(flagged[(scenarios == name) & (labels == 1)].mean())
                    for name in names
                },
            }
        )
    return rows
