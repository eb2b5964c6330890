"""score_batch: one decision per event, tiers from the model's thresholds, reasons for alerts."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np

from schemas import validator
from stream.scoring import ScoringModel, Thresholds, score_batch

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def _model(explained: list[int]) -> ScoringModel:
    def predict(matrix: np.ndarray) -> np.ndarray:
        # Score is the amount ratio (column 0) squashed into [0, 1]: easy to reason about.
        return np.clip(np.nan_to_num(matrix[:, 0]) / 10, 0, 1)

    def explain(matrix: np.ndarray) -> list[list[dict]]:
        explained.append(len(matrix))
        return [
            [{"feature": "amount_ratio", "value": float(v), "contribution": float(v) / 10}]
            for v in matrix[:, 0]
        ]

    return ScoringModel(
        name="fraud-detector",
        version="3",
        alias="champion",
        thresholds=Thresholds(review=0.3, decline=0.8),
        feature_names=("amount_ratio", "card_count_1h"),
        predict_proba=predict,
        explain=explain,
    )


def _event(i: int, seconds_ago: float = 0.05) -> dict:
    ts = (NOW - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")
    return {
        "transaction_id": f"tx-{i}",
        "timestamp": ts,
        "card_id": f"card-{i:05d}",
        "customer_id": "cust-1",
        "terminal_id": "term-1",
        "merchant_category": "5411",
        "channel": "pos",
        "amount": 10.0 * (i + 1),
        "currency": "EUR",
    }


def test_one_decision_per_event_with_tiers_reasons_and_lineage():
    explained: list[int] = []
    events = [_event(i) for i in range(4)]
    features = [
        {"amount_ratio": 1.0, "card_count_1h": 0.0},
        {"amount_ratio": 4.0, "card_count_1h": 2.0},
        {"amount_ratio": 9.5, "card_count_1h": None},
        {"amount_ratio": None, "card_count_1h": 1.0},
    ]
    # Each event entered the system 50 ms before NOW (its Kafka record timestamp).
    arrived = [NOW.timestamp() - 0.05] * len(events)
    out = score_batch(
        _model(explained), events, features, [False, False, True, False], NOW, arrived
    )

    assert [d["decision"] for d in out.decisions] == ["approve", "review", "decline", "approve"]
    assert [d["transaction_id"] for d in out.decisions] == ["tx-0", "tx-1", "tx-2", "tx-3"]
    assert explained == [2]  # one explainer call, only for the flagged rows
    assert [a["transaction_id"] for a in out.alerts] == ["tx-1", "tx-2"]
    assert out.decisions[0]["reason_codes"] == []
    assert out.decisions[2]["reason_codes"][0]["feature"] == "amount_ratio"
    assert out.decisions[2]["degraded"] is True
    assert out.decisions[2]["features"] == {"amount_ratio": 9.5, "card_count_1h": None}
    assert out.decisions[1]["model"] == {
        "name": "fraud-detector",
        "version": "3",
        "alias": "champion",
    }
    assert out.decisions[1]["thresholds"] == {"review": 0.3, "decline": 0.8}
    assert 49 <= out.decisions[0]["latency_ms"] <= 51
    for decision in out.decisions:
        validator("decision")(decision)
    for alert in out.alerts:
        validator("alert")(alert)


def test_empty_batch_scores_nothing():
    out = score_batch(_model([]), [], [], [], NOW)
    assert out.decisions == [] and out.alerts == []


def test_the_feature_store_matrix_gives_what_the_dicts_give():
    """The worker hands scoring the feature store's matrix (FEATURE_NAMES columns); a model
    over some of those features gets the same row-major matrix as from the dicts."""
    from stream.features import FEATURE_NAMES

    names = tuple(reversed(FEATURE_NAMES[:7]))
    model = dataclasses.replace(_model([]), feature_names=names)
    stream = np.arange(3 * len(FEATURE_NAMES), dtype=float).reshape(3, len(FEATURE_NAMES))
    stream[1, 2] = np.nan
    rows = [
        {
            name: (None if np.isnan(value) else value)
            for name, value in zip(FEATURE_NAMES, row, strict=True)
        }
        for row in stream
    ]
    picked = model.matrix(stream)
    assert picked.flags["C_CONTIGUOUS"]  # the layout numba compiled the trees for
    np.testing.assert_array_equal(picked, model.matrix(rows))
