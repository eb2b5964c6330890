from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stream.scoring import Thresholds
from training.evaluation import calibration, card_precision_at_k, scenario_recall, tier_metrics


def test_card_precision_at_k_by_hand():
    # Day 1: cards a (fraud), b, c (fraud), d; day 2: a (fraud), e.
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(
                [
                    "2026-01-01 01:00",
                    "2026-01-01 02:00",
                    "2026-01-01 03:00",
                    "2026-01-01 04:00",
                    "2026-01-01 05:00",
                    "2026-01-02 01:00",
                    "2026-01-02 02:00",
                ],
                utc=True,
            ),
            "card_id": ["a", "a", "b", "c", "d", "a", "e"],
            "is_fraud": [0, 1, 0, 1, 0, 1, 0],
        }
    )
    # A card's daily score is its max: day 1 a=0.9, b=0.8, c=0.3, d=0.1; day 2 e=0.7, a=0.2.
    scores = [0.9, 0.2, 0.8, 0.3, 0.1, 0.2, 0.7]
    mean, per_day = card_precision_at_k(frame, scores, k=2)
    # Day 1 top 2 = a (fraud), b -> 1/2; day 2 top 2 = e, a (fraud) -> 1/2.
    assert list(per_day) == [0.5, 0.5]
    assert mean == 0.5
    mean3, per_day3 = card_precision_at_k(frame, scores, k=3)
    # Day 1 top 3 = a, b, c -> 2/3; day 2 has two cards: 1 fraud card / k=3.
    assert per_day3.to_numpy() == pytest.approx([2 / 3, 1 / 3])
    assert mean3 == pytest.approx(0.5)


def test_tiers_precision_recall_and_alert_rate():
    labels = [1, 1, 0, 1, 0, 0, 0, 1, 0, 0]
    scores = [0.95, 0.9, 0.85, 0.6, 0.55, 0.3, 0.2, 0.1, 0.05, 0.0]
    result = tier_metrics(labels, scores, Thresholds(review=0.5, decline=0.8))
    assert result["decline"] == {
        "transactions": 3,
        "share": 0.3,
        "fraud": 2,
        "precision": 2 / 3,
        "recall": 0.5,
    }
    assert result["review"]["transactions"] == 2
    assert result["review"]["precision"] == 0.5
    assert result["review"]["recall"] == 0.25
    assert result["alert"]["recall"] == 0.75
    assert result["alert_rate"] == 0.5
    assert result["approve"]["fraud"] == 1


def test_recall_per_scenario():
    labels = [1, 1, 1, 1, 0]
    scenarios = pd.Series(["card_testing", "card_testing", "mimicry", "mimicry", None])
    scores = [0.9, 0.6, 0.1, 0.7, 0.95]
    table = scenario_recall(labels, scenarios, scores, Thresholds(0.5, 0.8)).set_index("scenario")
    assert table.loc["card_testing", "fraud"] == 2
    assert table.loc["card_testing", "recall_alert"] == 1.0
    assert table.loc["card_testing", "recall_decline"] == 0.5
    assert table.loc["mimicry", "recall_alert"] == 0.5
    assert table.loc["mimicry", "recall_decline"] == 0.0


def test_calibration_of_a_perfectly_calibrated_bin():
    labels = np.array([1] * 2 + [0] * 8 + [1] * 9 + [0] * 1)
    scores = np.array([0.2] * 10 + [0.9] * 10)
    result = calibration(labels, scores, bins=10)
    assert result["expected_calibration_error"] == pytest.approx(0.0)
    assert [row["transactions"] for row in result["reliability"]] == [10, 10]
    assert result["brier"] == pytest.approx((2 * 0.64 + 8 * 0.04 + 9 * 0.01 + 0.81) / 20)
