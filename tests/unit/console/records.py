"""Alerts, decisions and labels as the scorer and `fraud label` write them, for console tests."""

from __future__ import annotations

from typing import Any

from schemas import validator
from stream.features import FEATURE_NAMES


def a_decision(
    tid: str, score: float = 0.8, tier: str = "review", **changes: Any
) -> dict[str, Any]:
    features: dict[str, Any] = dict.fromkeys(FEATURE_NAMES, 1.0)
    features.update(amount=changes.pop("amount", 120.0), card_count_1h=7.0, card_count_30d=288.0)
    decision = {
        "transaction_id": tid,
        "card_id": changes.pop("card_id", "card-0001"),
        "event_time": changes.pop("event_time", "2026-03-02T10:00:00.000000Z"),
        "decided_at": changes.pop("decided_at", "2026-06-01T12:00:00.000000Z"),
        "score": score,
        "decision": tier,
        "thresholds": {"review": 0.5, "decline": 0.9},
        "model": {"name": "fraud-detector", "version": "3", "alias": "champion"},
        "features": features,
        "reason_codes": [{"feature": "card_count_1h", "value": 7.0, "contribution": 1.25}],
        "latency_ms": 3.5,
        "degraded": False,
    }
    decision.update(changes)
    return validator("decision")(decision)


def an_alert(tid: str, score: float = 0.8, tier: str = "review", **changes: Any) -> dict[str, Any]:
    alert = {
        "transaction_id": tid,
        "card_id": "card-0001",
        "customer_id": "cust-01",
        "terminal_id": "term-01",
        "merchant_category": "5411",
        "event_time": "2026-03-02T10:00:00.000000Z",
        "decided_at": "2026-06-01T12:00:00.000000Z",
        "amount": 120.0,
        "score": score,
        "decision": tier,
        "model_version": "3",
        "reason_codes": [{"feature": "card_count_1h", "value": 7.0, "contribution": 1.25}],
    }
    alert.update(changes)
    return validator("alert")(alert)


def a_label(tid: str, label: str, analyst: str, at: str, **changes: Any) -> dict[str, Any]:
    record = {
        "transaction_id": tid,
        "label": label,
        "analyst_id": analyst,
        "labelled_at": at,
        "source": "analyst",
    }
    record.update(changes)
    return validator("feedback")(record)
