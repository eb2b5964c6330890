"""Scoring a micro-batch: features in, one decision per transaction (and alerts) out.

Pure given the model: no Kafka, no Redis. The worker, `POST /predict` and the tests all call
`score_batch`, so there is one code path from features to decision. Features travel as one
float matrix (NaN = missing): no DataFrame on the hot path.

Fail closed: a score that is not a probability (NaN, infinite, outside [0, 1]) never approves;
the transaction goes to review with no score and `score_error` saying why, and is counted.

Latency is counted from when each event entered the system (its Kafka record's timestamp, or
the arrival of an HTTP request), not from the event's own `timestamp`: that is business time,
set by whoever produced the event, and a replay or a simulation may run it at any pace.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from stream.features import FEATURE_NAMES
from stream.scoring.policy import ALERT_TIERS, Thresholds, decide_many

Matrix = npt.NDArray[np.float64]
# Features per event: dicts by name, or the feature store's matrix (FEATURE_NAMES columns).
FeatureRows = Sequence[Mapping[str, float | None]] | Matrix
Explainer = Callable[[Matrix], list[list[dict[str, Any]]]]


@dataclass(frozen=True)
class ScoringModel:
    """What scoring needs from a registered model version."""

    name: str
    version: str
    alias: str | None
    thresholds: Thresholds
    feature_names: tuple[str, ...]
    predict_proba: Callable[[Matrix], np.ndarray]
    explain: Explainer

    def matrix(self, feature_rows: FeatureRows) -> Matrix:
        """Rows in `feature_names` order; a missing or None value becomes NaN. A float matrix
        is the stream's: FEATURE_NAMES columns (what the feature store computes)."""
        if isinstance(feature_rows, np.ndarray):
            # Row-major like every matrix the compiled trees see: picking columns returns a
            # column-major copy, and a new memory layout would make numba compile again.
            stream = feature_rows.reshape(-1, len(FEATURE_NAMES))
            return np.ascontiguousarray(stream[:, self._stream_columns])
        matrix = np.array(
            [[row.get(name) for name in self.feature_names] for row in feature_rows], dtype=float
        )
        return matrix.reshape(len(feature_rows), len(self.feature_names))

    @cached_property
    def _stream_columns(self) -> npt.NDArray[np.intp]:
        """Where each of `feature_names` sits among the stream's FEATURE_NAMES."""
        index = {name: column for column, name in enumerate(FEATURE_NAMES)}
        return np.array([index[name] for name in self.feature_names], dtype=np.intp)


@dataclass
class ScoredBatch:
    decisions: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    untrusted: int = 0  # scores that were not a probability (sent to review)


def score_batch(
    model: ScoringModel,
    events: Sequence[Mapping[str, Any]],
    feature_rows: FeatureRows,
    degraded: Sequence[bool],
    now: datetime,
    arrived: Sequence[float] | None = None,
) -> ScoredBatch:
    """One `predict_proba` for the batch; reason codes only for review/decline rows.

    `arrived`: when each event entered the system (epoch seconds); latency is `now` minus
    that (default: `now`, i.e. no queueing seen)."""
    if not events:
        return ScoredBatch([], [])
    matrix = model.matrix(feature_rows)
    scores = np.asarray(model.predict_proba(matrix), dtype=float).reshape(len(events))
    untrusted = ~np.isfinite(scores) | (scores < 0.0) | (scores > 1.0)
    tiers = decide_many(np.where(untrusted, 0.0, scores), model.thresholds)
    tiers[untrusted] = "review"
    flagged = [i for i, tier in enumerate(tiers) if tier in ALERT_TIERS and not untrusted[i]]
    reasons: dict[int, list[dict[str, Any]]] = {i: [] for i in np.flatnonzero(untrusted).tolist()}
    if flagged:
        explained = model.explain(matrix[flagged])
        reasons.update(zip(flagged, explained, strict=True))

    decided_at = now.isoformat(timespec="microseconds").replace("+00:00", "Z")
    thresholds = model.thresholds.as_dict()
    model_ref = {"name": model.name, "version": model.version, "alias": model.alias}
    now_s = now.timestamp()
    names = model.feature_names
    # Python floats, NaN (missing) -> None (null in JSON), for the whole batch at once.
    values = matrix.astype(object)
    values[np.isnan(matrix)] = None
    rows = values.tolist()
    # Plain Python values for the loop: indexing numpy arrays makes a numpy scalar each time.
    score_list = scores.tolist()
    tier_list = tiers.tolist()
    untrusted_list = untrusted.tolist()
    decisions, alerts = [], []
    for i, event in enumerate(events):
        latency_ms = 0.0 if arrived is None else max(0.0, (now_s - arrived[i]) * 1000)
        bad = untrusted_list[i]
        decision = {
            "transaction_id": event["transaction_id"],
            "card_id": event["card_id"],
            "event_time": event["timestamp"],
            "decided_at": decided_at,
            "score": None if bad else score_list[i],
            "decision": tier_list[i],
            "thresholds": thresholds,
            "model": model_ref,
            "features": dict(zip(names, rows[i], strict=True)),
            "reason_codes": reasons.get(i, []),
            "latency_ms": round(latency_ms, 3),
            "degraded": bool(degraded[i]),
        }
        if bad:
            decision["score_error"] = f"the model returned {score_list[i]!r}, not a probability"
        decisions.append(decision)
        if i in reasons:
            alerts.append(
                {
                    "transaction_id": event["transaction_id"],
                    "card_id": event["card_id"],
                    "customer_id": event["customer_id"],
                    "terminal_id": event["terminal_id"],
                    "merchant_category": event.get("merchant_category", ""),
                    "event_time": event["timestamp"],
                    "decided_at": decided_at,
                    "amount": event["amount"],
                    "score": decision["score"],
                    "decision": decision["decision"],
                    "model_version": model.version,
                    "reason_codes": decision["reason_codes"],
                }
            )
    return ScoredBatch(decisions, alerts, int(untrusted.sum()))
