"""Out-of-time selection: search candidates, the search itself, the carry-over check, the
genuine sample and the alert-budget curve, with numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.data import Fold
from training.evaluation import alert_rate_curve, threshold_for_alert_rate
from training.model import (
    SEARCH_SPACE,
    FoldFrames,
    FoldScores,
    PolicyTargets,
    carry_over_check,
    genuine_sample,
    out_of_time_search,
    search_candidates,
)

T = pd.Timestamp("2026-01-01", tz="UTC")
DAY = pd.Timedelta(days=1)


def test_candidates_start_with_the_defaults_and_are_distinct_and_seeded() -> None:
    base = {"learning_rate": 0.05, "max_iter": 400, "early_stopping": False}
    first = search_candidates(6, seed=1, base=base)
    assert first[0] == base
    assert len(first) == 6
    assert len({tuple(sorted(c.items())) for c in first}) == 6
    assert all(c["early_stopping"] is False for c in first)  # kept from the base
    for candidate in first[1:]:
        for name, values in SEARCH_SPACE.items():
            assert candidate[name] in values
    assert search_candidates(6, seed=1, base=base) == first
    assert search_candidates(6, seed=2, base=base) != first
    assert search_candidates(1, seed=1, base=base) == [base]
    with pytest.raises(ValueError, match="at least one trial"):
        search_candidates(0, seed=1, base=base)


def frames(labels_per_fold: list[list[int]]) -> list[FoldFrames]:
    parts = []
    for number, labels in enumerate(labels_per_fold):
        start = T + number * 5 * DAY
        validation = pd.DataFrame(
            {
                "timestamp": [start + DAY * i / len(labels) for i in range(len(labels))],
                "is_fraud": labels,
            }
        )
        fold = Fold(T, start - DAY, start, start + 5 * DAY)
        parts.append(FoldFrames(fold, validation, validation, validation.iloc[:0]))
    return parts


def test_the_search_ranks_by_mean_fold_average_precision_and_keeps_the_first_of_equals() -> None:
    parts = frames([[0, 1, 0, 1], [1, 0, 0, 0]])
    perfect = lambda labels: labels * 0.9 + 0.05  # noqa: E731
    backwards = lambda labels: 1 - perfect(labels)  # noqa: E731

    def score_fold(params, part):
        labels = part.validation["is_fraud"].to_numpy(dtype=float)
        return FoldScores(perfect(labels) if params["good"] else backwards(labels), np.empty(0))

    candidates = [{"good": False}, {"good": True}, {"good": True, "twin": 1}]
    seen = []
    result = out_of_time_search(parts, candidates, score_fold, on_trial=seen.append)
    assert [trial.number for trial in seen] == [1, 2, 3]
    assert result.best.number == 2  # trial 3 ties it: the earlier one stays
    assert result.best.objective == 1.0
    # Backwards: the frauds tie below every legit one, so AP = the fraud share of the fold.
    assert result.trials[0].folds[0].average_precision == pytest.approx(2 / 4)
    assert result.trials[0].folds[1].average_precision == pytest.approx(1 / 4)
    assert result.fold_of_row.tolist() == [1, 1, 1, 1, 2, 2, 2, 2]
    np.testing.assert_array_equal(result.best.scores, perfect(result.validation["is_fraud"]))
    assert result.summary()["chosen_params"] == {"good": True}


def test_carry_over_applies_the_earlier_folds_thresholds_to_the_last_fold() -> None:
    # Folds 1-2: 30 frauds scored 0.9, 4 frauds and 4 legit at 0.3 and 3,000 legit at 0.1
    # each; fold 3: 20 frauds
    # at 0.95, two legit at 0.92 (declined by mistake), 10 at 0.4 and 468 at 0.01. Each row
    # carries the score its fold's model gives it.
    def frame(scored: list[tuple[int, float, int]]) -> pd.DataFrame:
        rows = [(label, score) for label, score, count in scored for _ in range(count)]
        return pd.DataFrame(rows, columns=["is_fraud", "score"])

    def fold(number: int, validation: pd.DataFrame, recent: pd.DataFrame) -> FoldFrames:
        days = T + (7 + number) * DAY
        return FoldFrames(
            Fold(T, T + number * DAY, days, days + DAY), validation, validation, recent
        )

    def by_score(params, part):
        return FoldScores(part.validation["score"], part.recent["score"])

    early = frame([(1, 0.9, 30), (1, 0.3, 4), (0, 0.3, 4), (0, 0.1, 3000)])
    # Fold 3's model on its label-delay days: review at 0.3 would alert on 3 of 100 (more than
    # the 2% cap); 0.5 alerts on 2.
    recent = frame([(0, 0.95, 1), (0, 0.5, 1), (0, 0.35, 1), (0, 0.01, 97)])
    late = frame([(1, 0.95, 20), (0, 0.92, 2), (0, 0.4, 10), (0, 0.01, 468)])
    parts = [fold(1, early, early[:0]), fold(2, early, early[:0]), fold(3, late, recent)]
    search = out_of_time_search(parts, [{}], by_score)
    check = carry_over_check(search, PolicyTargets(decline_confidence=0.95))
    assert check is not None
    assert check["chosen_on_folds"] == [1, 2] and check["applied_to_fold"] == 3
    assert check["thresholds"]["decline"] == 0.9  # 60 of 60 at 0.9: lower bound 95.1%
    # Recall 90% needs 0.3 on folds 1-2, alerting 76 of 6,076 there: within the cap.
    assert check["carried"]["review_from_validation"] == 0.3
    assert check["thresholds"]["review"] == 0.5  # the cap, enforced on fold 3's recent days
    assert check["carried"]["recent_alert_rate"] == pytest.approx(2 / 100)
    achieved = check["achieved"]
    assert achieved["declined"] == 22
    assert achieved["decline_precision"] == pytest.approx(20 / 22)
    assert achieved["decline_recall"] == 1.0
    assert achieved["alert_rate"] == pytest.approx(22 / 500)  # not the 32 at review 0.3
    single = out_of_time_search(parts[:1], [{}], by_score)
    assert carry_over_check(single, PolicyTargets()) is None


def test_the_genuine_sample_keeps_every_fraud_and_the_same_rows_in_every_window() -> None:
    ids = pd.Series([f"tx{i}" for i in range(20_000)])
    labels = np.zeros(20_000, dtype=int)
    labels[::50] = 1
    keep, weights = genuine_sample(ids, labels, share=0.25, seed=1)
    assert keep[labels == 1].all()
    assert abs(keep[labels == 0].mean() - 0.25) < 0.02
    assert set(weights[labels[keep] == 1]) == {1.0} and set(weights[labels[keep] == 0]) == {4.0}
    assert weights.sum() == pytest.approx(len(ids), rel=0.03)  # stands for the whole window
    # A transaction's fate depends on its id and the seed, not on the window around it.
    later, _ = genuine_sample(ids[5_000:], labels[5_000:], share=0.25, seed=1)
    np.testing.assert_array_equal(later, keep[5_000:])
    other, _ = genuine_sample(ids, labels, share=0.25, seed=2)
    assert (other != keep).any()
    everything, ones = genuine_sample(ids, labels, share=1.0, seed=1)
    assert everything.all() and (ones == 1.0).all()


def test_threshold_for_an_alert_rate_stays_within_the_budget() -> None:
    scores = np.array([0.9, 0.8, 0.8, 0.5, 0.4, 0.3, 0.2, 0.2, 0.1, 0.0])
    assert threshold_for_alert_rate(scores, 0.1) == 0.9
    assert threshold_for_alert_rate(scores, 0.2) == 0.9  # 0.8 would flag three (tied)
    assert threshold_for_alert_rate(scores, 0.3) == 0.8
    assert threshold_for_alert_rate(scores, 0.05) == float("inf")


def test_the_curve_reads_on_the_test_what_validation_thresholds_buy() -> None:
    validation = np.linspace(0.0, 0.99, 100)  # 100 distinct scores
    validation_labels = (validation >= 0.95).astype(int)  # the top 5 are fraud
    test = pd.DataFrame(
        {
            "is_fraud": [1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
            "fraud_scenario": ["a", "b", "b", None, None, None, None, None, None, None],
        }
    )
    test_scores = np.array([0.99, 0.985, 0.5, 0.97, 0.2, 0.1, 0.1, 0.0, 0.0, 0.0])
    (row,) = alert_rate_curve(validation, validation_labels, test_scores, test, rates=[0.02])
    assert row["review_threshold"] == pytest.approx(0.98)  # the 2 highest of 100
    assert row["validation_recall"] == pytest.approx(2 / 5)
    assert row["test_alert_rate"] == pytest.approx(2 / 10)
    assert row["test_recall"] == pytest.approx(2 / 3)
    assert row["test_recall_by_scenario"] == {"a": 1.0, "b": 0.5}


def test_the_curve_carries_each_budget_to_the_final_model_as_the_thresholds_are() -> None:
    validation = np.linspace(0.0, 0.99, 100)
    validation_labels = (validation >= 0.95).astype(int)
    test = pd.DataFrame({"is_fraud": [1, 0, 0, 0]})
    test_scores = np.array([0.99, 0.985, 0.97, 0.0])
    # The final model scores its recent days higher: 0.98 would alert on 4 of 100 of them.
    recent = np.concatenate([[0.999, 0.995, 0.99, 0.985], np.zeros(96)])
    (row,) = alert_rate_curve(
        validation, validation_labels, test_scores, test, rates=[0.02], recent_scores=recent
    )
    assert row["review_threshold"] == 0.995  # 2 of its 100 recent scores
    assert row["validation_recall"] == pytest.approx(2 / 5)  # of the validation threshold
    assert row["test_alert_rate"] == 0.0 and row["test_recall"] == 0.0


def test_a_fit_leaves_out_inputs_missing_on_all_its_rows() -> None:
    from training.data import FeatureSpec
    from training.model import Fitter

    rng = np.random.default_rng(3)
    n = 4_000
    frame = pd.DataFrame(
        {
            "transaction_id": [f"tx{i}" for i in range(n)],
            "is_fraud": (rng.random(n) < 0.05).astype(int),
            "signal": rng.normal(size=n),
            "constant": 1.0,
            "missing": np.nan,  # e.g. a young card's typical day
        }
    )
    frame["signal"] += 2 * frame["is_fraud"]
    spec = FeatureSpec(("signal", "constant", "missing"), (), ())
    params = {"max_iter": 20, "early_stopping": False}
    for share in (0.25, 1.0):
        fitter = Fitter("hist_gradient_boosting", spec, seed=1, genuine_share=share)
        model = fitter.fit(frame, params)
        assert list(model.feature_names_in_) == ["signal", "constant"]
        scores = fitter.scores(model, frame)
        assert scores[frame["is_fraud"] == 1].mean() > scores[frame["is_fraud"] == 0].mean()
