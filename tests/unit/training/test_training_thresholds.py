from __future__ import annotations

import numpy as np
import pytest

from fraud.errors import ValidationError
from training.model import PolicyTargets, cap_on_recent, choose_thresholds

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


def _brute_force_decline(scores: np.ndarray, labels: np.ndarray, confidence: float | None) -> float:
    """The lowest observed score whose decline set meets 95% precision: observed, or its
    one-sided exact (Clopper-Pearson) lower bound from scipy's binomial test."""
    from scipy.stats import binomtest

    met = []
    for threshold in np.unique(scores):
        declined = labels[scores >= threshold]
        k, n = int(declined.sum()), len(declined)
        if confidence is None:
            low = k / n
        else:
            test = binomtest(k, n, alternative="greater")
            low = test.proportion_ci(confidence_level=confidence, method="exact").low
        if low >= 0.95:
            met.append(threshold)
    return float(min(met))


def test_decline_threshold_needs_the_precision_target_with_confidence():
    rng = np.random.default_rng(7)
    scores = np.round(rng.random(20_000), 3)
    fraud_odds = np.clip(1 - 3 * (1 - scores), 0.001, None)  # 0.97 at a score of 0.99
    labels = (rng.random(20_000) < fraud_odds).astype(np.int64)
    confident = choose_thresholds(scores, labels, PolicyTargets(max_alert_rate=1.0))
    observed = choose_thresholds(
        scores, labels, PolicyTargets(max_alert_rate=1.0, decline_confidence=None)
    )

    assert confident.thresholds.decline == _brute_force_decline(scores, labels, 0.95)
    assert observed.thresholds.decline == _brute_force_decline(scores, labels, None)
    assert confident.thresholds.decline > observed.thresholds.decline
    assert confident.decline_rule == "95% lower confidence bound"
    assert observed.decline_rule == "observed precision"
    assert confident.decline_precision_lower_bound >= 0.95
    assert confident.decline_precision > observed.decline_precision >= 0.95


def test_too_few_frauds_for_confidence_fall_back_to_the_observed_precision():
    # 40 frauds above every legit transaction: even all of them alone would only show
    # precision >= 0.05 ** (1 / 40) = 0.928 with 95% confidence.
    scores = np.r_[np.linspace(0.6, 0.99, 40), np.linspace(0.0, 0.5, 400)]
    labels = np.r_[np.ones(40), np.zeros(400)].astype(np.int64)
    choice = choose_thresholds(scores, labels, PolicyTargets(max_alert_rate=1.0))
    assert choice.thresholds.decline == _brute_force_decline(scores, labels, None)
    assert labels[scores >= choice.thresholds.decline].tolist() == [1] * 40 + [0, 0]  # 95.2%
    assert choice.decline_rule == "observed precision"
    assert choice.decline_precision_lower_bound < 0.05 ** (1 / 40)
    assert any("too few validation frauds" in note for note in choice.notes)


def test_decline_confidence_must_be_a_probability_of_at_least_a_half():
    with pytest.raises(ValueError, match="decline_confidence"):
        PolicyTargets(decline_confidence=1.0)
    with pytest.raises(ValueError, match="decline_confidence"):
        PolicyTargets(decline_confidence=0.2)


def test_carried_thresholds_keep_the_alert_cap_on_the_new_models_recent_scores():
    targets = PolicyTargets(0.8, 0.8, max_alert_rate=0.75, decline_confidence=None)
    choice = choose_thresholds(SCORES, LABELS, targets)  # review 0.40 (15 of 20), decline 0.85
    assert (choice.thresholds.review, choice.thresholds.decline) == (0.40, 0.85)
    # The new model spreads higher: 0.40 would alert on 16 of 20 of its recent scores.
    recent = np.array([0.95, 0.9, 0.8, 0.7, 0.65, 0.6, 0.55, 0.5, 0.45, 0.44, 0.43, 0.42,
                       0.41, 0.405, 0.402, 0.401, 0.1, 0.1, 0.1, 0.1])  # fmt: skip
    carried = cap_on_recent(choice, recent)
    assert carried.thresholds.decline == choice.thresholds.decline
    assert carried.thresholds.review == 0.402  # 15 of 20 = the 75% cap
    assert carried.carried["recent_alert_rate_before"] == pytest.approx(16 / 20)
    assert carried.carried["recent_alert_rate"] == pytest.approx(15 / 20)
    assert any("raised from 0.4 to 0.402" in note for note in carried.notes)
    # Never lowered, never above the decline threshold, unchanged without recent scores.
    assert cap_on_recent(choice, np.full(20, 0.01)).thresholds == choice.thresholds
    assert cap_on_recent(choice, np.full(20, 0.99)).thresholds.review == 0.85
    assert cap_on_recent(choice, np.empty(0)).thresholds == choice.thresholds
