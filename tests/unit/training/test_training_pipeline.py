from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from fraud.errors import ValidationError
from tests.unit.training.test_training_helpers import SPEC, synthetic_customers, synthetic_labelled
from training.data import FeatureSpec, default_split, labelled_features
from training.evaluation import FairnessGate, attach_groups
from training.model import TrainConfig, choose_thresholds, train_on_split
from training.results import dumps

CONFIG = TrainConfig(seed=3, fairness_gate=FairnessGate(min_expected_events=5), search_trials=2)
SMALL = {"hist_gradient_boosting": {"max_iter": 60}}


def without_timings(value):
    """A summary without its wall-clock fields (everything else must repeat exactly)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if not k.endswith("seconds")}
    if isinstance(value, list):
        return [without_timings(item) for item in value]
    return value


@pytest.fixture(scope="module")
def labelled() -> pd.DataFrame:
    return synthetic_labelled(days=40, per_day=250, seed=1)


@pytest.fixture(scope="module")
def split(labelled):
    return default_split(labelled["timestamp"], timedelta(days=7), validation_days=9, warmup_days=1)


def test_same_data_and_seed_give_the_same_metrics(labelled, split):
    groups = attach_groups(labelled, synthetic_customers(), split.test_from)
    first = train_on_split(labelled, split, SPEC, CONFIG, groups)
    # The search's fits side by side on two threads: the same fits, the same results.
    second = train_on_split(labelled.copy(), split, SPEC, replace(CONFIG, jobs=2), groups.copy())

    def comparable(outcome):
        return dumps(without_timings(outcome.summary()))

    assert comparable(first) == comparable(second)
    assert first.summary()["evaluation"]["test"]["average_precision"] > 0.05  # fraud rate ~0.012
    np.testing.assert_array_equal(first.default.scores["test"], second.default.scores["test"])
    assert first.baseline is not None and second.baseline is not None
    np.testing.assert_array_equal(first.baseline.scores["test"], second.baseline.scores["test"])


def test_age_and_gender_change_no_score(labelled, split):
    customers = synthetic_customers()
    altered = customers.assign(
        birth_year=2005 - (customers["birth_year"] - 1940),
        gender=customers["gender"].map({"F": "M", "M": "F"}),
    )
    config = TrainConfig(
        seed=3, with_baseline=False, fairness_gate=CONFIG.fairness_gate, overrides=SMALL
    )
    original = train_on_split(
        labelled, split, SPEC, config, attach_groups(labelled, customers, split.test_from)
    )
    changed = train_on_split(
        labelled, split, SPEC, config, attach_groups(labelled, altered, split.test_from)
    )
    for window in ("validation", "test"):
        np.testing.assert_array_equal(
            original.default.scores[window], changed.default.scores[window]
        )
    assert (
        original.default.threshold_choice.thresholds == changed.default.threshold_choice.thresholds
    )

    # The customers table did reach the audit: its groups moved.
    def rows(outcome, attribute):
        return {
            row["group"]: row["transactions"]
            for row in outcome.fairness["attributes"][attribute]["groups"]
        }

    assert rows(original, "gender") == {
        "F": rows(changed, "gender")["M"],
        "M": rows(changed, "gender")["F"],
    }
    assert rows(original, "age_band") != rows(changed, "age_band")


def test_the_holdout_split_is_respected_by_the_windows(labelled):
    split = default_split(
        labelled["timestamp"], timedelta(days=7), validation_days=8, warmup_days=1, folds=0
    )
    outcome = train_on_split(
        labelled, split, SPEC, TrainConfig(with_baseline=False, overrides=SMALL), None
    )
    train, validation, test = (outcome.windows[w] for w in ("train", "validation", "test"))
    assert train["timestamp"].max() + timedelta(days=7) <= validation["timestamp"].min()
    assert validation["timestamp"].max() + timedelta(days=7) <= test["timestamp"].min()
    assert set(train["transaction_id"]).isdisjoint(test["transaction_id"])
    assert outcome.fairness is None
    assert outcome.default.search is None and outcome.summary()["design"] == "holdout"
    assert outcome.summary()["split"]["gap_validation_test_days"] == 7.0


def test_the_refit_learns_every_labelled_day_and_chooses_out_of_time(labelled, split):
    config = TrainConfig(with_baseline=False, overrides=SMALL, search_trials=2)
    outcome = train_on_split(labelled, split, SPEC, config, None)
    train, validation, test = (outcome.windows[w] for w in ("train", "validation", "test"))
    # The refit learned from every labelled day, up to one label delay before the test ...
    assert train["timestamp"].min() >= split.train_from
    assert train["timestamp"].max() < split.train_to <= test["timestamp"].min() - timedelta(days=7)
    assert outcome.default.model.n_features_in_ == len(SPEC.names)
    # ... while each validation row was scored by a fold model that stopped a delay before it.
    search = outcome.default.search
    assert search is not None and len(search.trials) == 2 and len(search.folds) == 3
    for number, fold in enumerate(search.folds, start=1):
        rows = validation.loc[search.fold_of_row == number, "timestamp"]
        assert rows.min() >= fold.validation_from >= fold.train_to + timedelta(days=7)
        assert rows.max() < fold.validation_to
    assert len(validation) == int(split.mask(labelled["timestamp"], "validation").sum())
    # The thresholds come from the chosen trial's out-of-time scores, and those are the
    # validation scores the evaluation reports.
    best = search.best
    assert best.objective == max(trial.objective for trial in search.trials)
    np.testing.assert_array_equal(outcome.default.scores["validation"], best.scores)
    again = choose_thresholds(best.scores, validation["is_fraud"], config.targets)
    final = outcome.default.threshold_choice
    assert final.thresholds.decline == again.thresholds.decline
    # The review threshold carries over too, raised if need be so that the refit model alerts
    # on at most the cap's share of the label-delay days before the test.
    recent = outcome.windows["recent"]
    assert recent["timestamp"].min() >= split.train_to
    assert recent["timestamp"].max() < split.test_from
    recent_scores = outcome.default.model.predict_proba(recent[list(SPEC.names)])[:, 1]
    assert final.thresholds.review >= again.thresholds.review
    assert (recent_scores >= final.thresholds.review).mean() <= config.targets.max_alert_rate
    assert final.carried["recent_rows"] == len(recent)
    assert outcome.default.params == best.params
    summary = outcome.summary()
    assert summary["design"] == "refit" and summary["search"]["chosen_trial"] == best.number
    assert summary["carry_over_check"]["applied_to_fold"] == 3
    assert [row["alert_rate_budget"] for row in summary["alert_rate_curve"]][:3] == [
        0.005,
        0.01,
        0.02,
    ]


def test_the_previous_design_runs_beside_on_the_same_test_rows(labelled):
    split = default_split(
        labelled["timestamp"], timedelta(days=7), validation_days=9, warmup_days=1
    )
    config = TrainConfig(with_baseline=False, overrides=SMALL, previous_design=True)
    outcome = train_on_split(labelled, split, SPEC, config, None)
    previous = outcome.summary()["previous_design"]
    assert previous["split"]["test_from"] == split.as_dict()["test_from"]
    assert previous["split"]["validation_to"] == split.as_dict()["train_to"]
    assert previous["evaluation"]["test"]["transactions"] == len(outcome.windows["test"])
    assert previous["params"]["max_iter"] == 400  # the estimator's defaults, not the overrides


def test_protected_attributes_can_never_be_model_inputs():
    spec = FeatureSpec(names=("amount", "gender"), categorical=(), protected=("gender", "age"))
    with pytest.raises(ValidationError, match="protected"):
        labelled_features(pd.DataFrame(), timedelta(days=7), spec)


def test_the_stream_features_hold_no_protected_attribute():
    features = pytest.importorskip("stream.features.definition")
    assert not set(features.PROTECTED_ATTRIBUTES) & set(features.FEATURE_NAMES)
    assert set(features.CATEGORICAL_FEATURES) <= set(features.FEATURE_NAMES)


def test_a_test_window_without_labels_is_scored_and_evaluated_where_labels_exist(labelled, split):
    pending = labelled.assign(is_labelled=True)
    test = split.mask(pending["timestamp"], "test")
    late = test & (pending["timestamp"] >= split.test_from + timedelta(days=5)).to_numpy()
    pending.loc[late, "is_labelled"] = False
    pending.loc[late, "is_fraud"] = 0  # as validation leaves a pending verdict
    config = TrainConfig(with_baseline=False, overrides=SMALL, test_needs_fraud=False)
    outcome = train_on_split(pending, split, SPEC, config, None)
    assert len(outcome.default.scores["test"]) == int(test.sum())  # every test row scored
    evaluation = outcome.default.evaluation["test"]
    assert evaluation["unlabelled_transactions"] == int(late.sum())
    assert evaluation["transactions"] == int(test.sum() - late.sum())
    # Pending rows inside the training window are not learned from either.
    in_training = split.mask(pending["timestamp"], "train")
    some = in_training & (np.random.default_rng(5).random(len(pending)) < 0.3)
    kept = train_on_split(pending.assign(is_labelled=~some), split, SPEC, config, None)
    assert kept.windows["train"]["is_labelled"].all()
    assert len(kept.windows["train"]) < int(split.mask(pending["timestamp"], "train").sum())


def test_a_test_window_without_fraud_is_scored_not_refused(labelled, split):
    quiet = labelled.copy()
    quiet.loc[split.mask(quiet["timestamp"], "test"), "is_fraud"] = 0
    with pytest.raises(ValidationError, match="the test window"):  # nothing to judge a model on
        train_on_split(quiet, split, SPEC, TrainConfig(with_baseline=False, overrides=SMALL))
    config = TrainConfig(with_baseline=False, overrides=SMALL, test_needs_fraud=False)
    outcome = train_on_split(quiet, split, SPEC, config, None)
    test = outcome.default.evaluation["test"]
    assert test["fraud"] == 0 and test["average_precision"] is None
    assert test["tiers"]["alert"]["recall"] is None
    assert outcome.targets_on_test["recall_met"] is False
