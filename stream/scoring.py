"""Scoring a micro-batch: features in, one decision per transaction (and alerts) out.

Pure given the model: no Kafka, no Redis. The worker, `POST /predict` and the tests all call
`score_batch`, so there is one code path from features to decision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from stream.policy import ALERT_TIERS, Thresholds, decide_many

Explainer = Callable[[pd.DataFrame], list[list[dict[str, Any]]]]


@dataclass(frozen=True)
class ScoringModel:
    """What scoring needs from a registered model version."""

    name: str
    version: str
    alias: str | None
    thresholds: Thresholds
    feature_names: tuple[str, ...]
    predict_proba: Callable[[pd.DataFrame], np.ndarray]
    explain: Explainer

    def frame(self, feature_rows: Sequence[Mapping[str, float | None]]) -> pd.DataFrame:
        matrix = np.array(
            [[row.get(name) for name in self.feature_names] for row in feature_rows], dtype=float
        )
        return pd.DataFrame(
            matrix.reshape(len(feature_rows), len(self.feature_names)),
            columns=list(self.feature_names),
        )


@dataclass
class ScoredBatch:
    decisions: list[dict[str, Any]]
    alerts: list[dict[str, Any]]


def parse_event_time(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def _json_value(value: float) -> float | None:
    return None if value != value else float(value)  # NaN -> null in JSON


def score_batch(
    model: ScoringModel,
    events: Sequence[Mapping[str, Any]],
    feature_rows: Sequence[Mapping[str, float | None]],
    degraded: Sequence[bool],
    now: datetime,
) -> ScoredBatch:
    """One `predict_proba` for the batch; reason codes only for review/decline rows."""
    if not events:
        return ScoredBatch([], [])
    frame = model.frame(feature_rows)
    scores = np.asarray(model.predict_proba(frame), dtype=float)
    tiers = decide_many(scores, model.thresholds)
    flagged = [i for i, tier in enumerate(tiers) if tier in ALERT_TIERS]
    reasons: dict[int, list[dict[str, Any]]] = {}
    if flagged:
        explained = model.explain(frame.iloc[flagged])
        reasons = dict(zip(flagged, explained, strict=True))

    decided_at = now.isoformat(timespec="microseconds").replace("+00:00", "Z")
    thresholds = model.thresholds.as_dict()
    model_ref = {"name": model.name, "version": model.version, "alias": model.alias}
    matrix = frame.to_numpy()
    decisions, alerts = [], []
    for i, event in enumerate(events):
        latency_ms = max(0.0, (now - parse_event_time(event["timestamp"])).total_seconds() * 1000)
        values = matrix[i]
        decision = {
            "transaction_id": event["transaction_id"],
            "card_id": event["card_id"],
            "event_time": event["timestamp"],
            "decided_at": decided_at,
            "score": float(scores[i]),
            "decision": str(tiers[i]),
            "thresholds": thresholds,
            "model": model_ref,
            "features": {
                name: _json_value(v) for name, v in zip(model.feature_names, values, strict=True)
            },
            "reason_codes": reasons.get(i, []),
            "latency_ms": round(latency_ms, 3),
            "degraded": bool(degraded[i]),
        }
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
    return ScoredBatch(decisions, alerts)
