from __future__ import annotations

import numpy as np
import pytest

from fraud.errors import ValidationError
from training.thresholds import PolicyTargets, choose_thresholds

# 20 transactions, highest score first. Frauds at ranks 1-4, 6, 9, 12, 15, 18, 20.
SCORES = np.array([0.99, 0.97, 0.95, 0.93, 0.90, 0.85, 0.80, 0.75, 0.70, 0.65,
                   0.60, 0.55, 0.50, 0.45, 0.40, 0.35, 0.30, 0.25, 0.20, 0.15])  # fmt: skip
LABELS = np.array([1, 1, 1, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 1])


def test_known_answers_without_a_binding_cap():
    choice = choose_thresholds(SCORES, LABELS, PolicyTargets(0.8, 0.8, max_alert_rate=1.0))
    # precision of score >= t: 0.93 -> 4/4, 0.85 -> 5/6 = 0.83, 0.70 -> 6/9: lowest with >= 0.8 is 0.85
    assert choice.thresholds.decline == 0.85
    # recall of score >= t: 0.40 -> 8/10 is the first (highest) threshold reaching 0.8
    assert choice.thresholds.review == 0.40
    assert choice.decline_precision == pytest.approx(5 / 6)
    assert choice.alert_recall == pytest.approx(0.8)
    assert choice.alert_rate == pytest.approx(15 / 20)
    assert choice.decline_target_met and choice.recall_target_met
    assert not choice.alert_cap_binds


def test_alert_cap_binds_before_recall():
    choice = choose_thresholds(SCORES, LABELS, PolicyTargets(0.8, 0.9, max_alert_rate=0.5))
    # recall 0.9 would need score >= 0.25 (16 alerts); the cap allows 10: threshold 0.65
    assert choice.thresholds.review == 0.65
    assert choice.alert_cap_binds
    assert choice.alert_rate == pytest.approx(0.5)
    assert choice.alert_recall == pytest.approx(0.6)
    assert not choice.recall_target_met
    assert any("cap" in note for note in choice.notes)


def test_unreachable_precision_means_no_automatic_declines():
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    labels = np.array([0, 1, 0, 1])
    choice = choose_thresholds(scores, labels, PolicyTargets(0.95, 0.5, max_alert_rate=1.0))
    assert choice.thresholds.decline == 1.0
    assert not choice.decline_target_met
    assert choice.thresholds.review == 0.8


def test_review_never_exceeds_decline():
    scores = np.array([0.9, 0.8, 0.1, 0.05])
    labels = np.array([1, 1, 0, 0])
    choice = choose_thresholds(scores, labels, PolicyTargets(0.95, 0.9, max_alert_rate=1.0))
    assert choice.thresholds.decline == 0.8
    assert choice.thresholds.review == 0.8  # declines alone reach the recall target


def test_ties_are_decided_together():
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    labels = np.array([1, 1, 0, 0, 0])
    choice = choose_thresholds(scores, labels, PolicyTargets(0.95, 1.0, max_alert_rate=1.0))
    assert choice.thresholds.decline == 0.9
    assert choice.thresholds.review == 0.5
    assert choice.alert_rate == pytest.approx(0.8)


def test_no_fraud_in_validation_is_an_error():
    with pytest.raises(ValidationError, match="no fraud"):
        choose_thresholds([0.1, 0.2], [0, 0])
