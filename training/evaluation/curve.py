"""The recall / alert-rate curve: what each alert budget would buy, for the bank to choose.

For each candidate alert rate r, the review threshold is the one a budget of r would give on the
validation scores (the highest score flagging at most r of the validation transactions, as the
thresholds rule does for the cap); the curve then reads what that threshold achieved on the
validation and on the test period, overall and per fraud scenario. The thresholds come from
validation only, so the test columns are an honest forecast of choosing that budget.
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
) -> list[dict[str, Any]]:
    """One row per alert rate: its threshold, validation recall, test alert rate and recall,
    and test recall per fraud scenario (when `test` has `fraud_scenario`)."""
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
        threshold = threshold_for_alert_rate(val_scores, rate)
        flagged = scores >= threshold
        rows.append(
            {
                "alert_rate_budget": rate,
                "review_threshold": threshold,
                "validation_recall": _recall(val_labels, val_scores >= threshold),
                "test_alert_rate": float(flagged.mean()) if flagged.size else None,
                "test_recall": _recall(labels, flagged),
                "test_recall_by_scenario": {
                    name: float(flagged[(scenarios == name) & (labels == 1)].mean())
                    for name in names
                },
            }
        )
    return rows
