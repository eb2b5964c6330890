"""Is one model credibly worse than another on the same labelled rows? A paired bootstrap of the
difference in average precision.

    result = paired_difference(labels, challenger_scores, champion_scores, confidence=0.95, seed=1)
    credibly_worse = result["upper_bound"] < -tolerance

Why this way:

- Paired. Both models score the same rows, and each replicate resamples rows, not models: the
  rows that are hard for one are hard for the other, so the difference varies far less than
  either average precision does on its own.
- Stratified by label. Frauds are resampled among the frauds and legitimate rows among the
  legitimate ones, so every replicate holds as many frauds as the window (with ~50 frauds an
  unstratified replicate's fraud count alone would move the average precision).
- The bound is the bootstrap percentile: `upper_bound` is the `confidence` quantile of the
  replicates' differences (one-sided), `lower_bound` the 1 - `confidence` quantile. Seeded: the
  same rows, scores and seed give the same bounds.
- Vectorised, and exact. Average precision moves only at a fraud's score: each row is placed
  once, per model, at the first such threshold that counts it (ties form one threshold, as in
  scikit-learn). A replicate is then a count of drawn rows per threshold (one bincount for a
  block of replicates), and its average precision the sum over thresholds of recall gained times
  precision, from cumulative sums: what average_precision_score gives with the drawn counts as
  sample weights. On 10,000 rows with 50 frauds, 1,000 replicates of two models take a few
  tenths of a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score

# Draws (replicates x rows) per block: bounds memory at a few tens of MB whatever the window.
_BLOCK_DRAWS = 2_000_000


def _segments(
    scores: npt.NDArray[np.float64], fraud: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.int64], int]:
    """Each row's threshold index: 0 when it scores at or above the highest fraud score, k when
    it first counts at the (k+1)-th highest distinct fraud score, `thresholds` when it scores
    below every fraud (never counted). Only thresholds at a fraud's score can move recall."""
    values = np.unique(scores[fraud])  # ascending
    below = len(values) - np.searchsorted(values, scores, side="right")
    return below.astype(np.int64), len(values)


def _counts_by_segment(
    segment: npt.NDArray[np.int64], draws: npt.NDArray[np.int64], thresholds: int
) -> npt.NDArray[np.float64]:
    """(replicates, thresholds): how many drawn rows of each replicate fall at each threshold."""
    replicates = len(draws)
    width = thresholds + 1  # the last column: rows below every threshold
    cells = segment[draws] + np.arange(replicates)[:, None] * width
    counts = np.bincount(cells.ravel(), minlength=replicates * width).reshape(replicates, width)
    return counts[:, :thresholds].astype(np.float64)


def _average_precision(
    caught_at: npt.NDArray[np.float64], false_at: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Average precision per replicate from the frauds and legitimate rows first counted at each
    threshold (highest first): the sum over thresholds of recall gained times precision."""
    caught = np.cumsum(caught_at, axis=1)
    flagged = caught + np.cumsum(false_at, axis=1)
    precision = np.divide(caught, flagged, out=np.zeros_like(caught), where=flagged > 0)
    return np.asarray((caught_at * precision).sum(axis=1) / caught[:, -1], dtype=np.float64)


def bootstrap_average_precision(
    labels: npt.ArrayLike,
    scores: Sequence[npt.ArrayLike],
    replicates: int = 1000,
    seed: int = 0,
) -> npt.NDArray[np.float64]:
    """(models, replicates): each model's average precision on the same label-stratified
    resamples of the rows (replicate k draws the same rows for every model)."""
    y = np.asarray(labels, dtype=np.int64)
    fraud = y == 1
    frauds, legit = int(fraud.sum()), int((y == 0).sum())
    if not frauds or not legit or frauds + legit != len(y):
        raise ValueError("the labels must be 0 or 1, with both present")
    if replicates < 1:
        raise ValueError(f"replicates must be at least 1, got {replicates}")
    columns = [np.asarray(s, dtype=np.float64) for s in scores]
    if any(column.shape != y.shape for column in columns):
        raise ValueError("every model needs one score per labelled row")
    segments = []
    for column in columns:
        segment, thresholds = _segments(column, fraud)
        segments.append((segment[fraud], segment[~fraud], thresholds))
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_DRAWS // len(y))
    result = np.empty((len(columns), replicates), dtype=np.float64)
    for start in range(0, replicates, block):
        count = min(block, replicates - start)
        fraud_draws = rng.integers(0, frauds, size=(count, frauds))
        legit_draws = rng.integers(0, legit, size=(count, legit))
        for model, (of_frauds, of_legit, thresholds) in enumerate(segments):
            result[model, start : start + count] = _average_precision(
                _counts_by_segment(of_frauds, fraud_draws, thresholds),
                _counts_by_segment(of_legit, legit_draws, thresholds),
            )
    return result


def paired_difference(
    labels: npt.ArrayLike,
    first: npt.ArrayLike,
    second: npt.ArrayLike,
    *,
    replicates: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Average precision of `first` minus that of `second` on the same rows: the point
    difference and its one-sided bootstrap bounds at `confidence` (see the module notes)."""
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence}")
    y = np.asarray(labels, dtype=np.int64)
    samples = bootstrap_average_precision(y, [first, second], replicates, seed)
    point = [float(average_precision_score(y, scores)) for scores in (first, second)]
    differences = samples[0] - samples[1]
    return {
        "method": "paired bootstrap, stratified by label (percentile bounds)",
        "rows": len(y),
        "frauds": int(y.sum()),
        "replicates": replicates,
        "seed": seed,
        "confidence": confidence,
        "difference": point[0] - point[1],
        "lower_bound": float(np.quantile(differences, 1 - confidence)),
        "upper_bound": float(np.quantile(differences, confidence)),
        "standard_error": float(differences.std(ddof=1)) if replicates > 1 else None,
    }
