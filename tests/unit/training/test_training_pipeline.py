from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from fraud.errors import ValidationError
from tests.unit.training.test_training_helpers import SPEC, synthetic_customers, synthetic_labelled
from training.data import FeatureSpec, default_split, labelled_features
from training.evaluation import FairnessGate, attach_groups
from training.model import TrainConfig, train_on_split
from training.results import dumps

CONFIG = TrainConfig(seed=3, fairness_gate=FairnessGate(min_expected_events=5))
SMALL = {"hist_gradient_boosting": {"max_iter": 60}}


@pytest.fixture(scope="module")
def labelled() -> pd.DataFrame:
    return synthetic_labelled(days=40, per_day=250, seed=1)


@pytest.fixture(scope="module")
def split(labelled):
    return default_split(labelled["timestamp"], timedelta(days=7), warmup_days=1)


def test_same_data_and_seed_give_the_same_metrics(labelled, split):
    groups = attach_groups(labelled, synthetic_customers(), split.test_from)
    first = train_on_split(labelled, split, SPEC, CONFIG, groups)
    second = train_on_split(labelled.copy(), split, SPEC, CONFIG, groups.copy())

    def comparable(outcome):
        summary = outcome.summary()
        summary.pop("fit_seconds")
        summary["baseline"].pop("fit_seconds")
        return dumps(summary)

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


def test_the_split_is_respected_by_the_windows(labelled, split):
    outcome = train_on_split(
        labelled, split, SPEC, TrainConfig(with_baseline=False, overrides=SMALL), None
    )
    train, validation, test = (outcome.windows[w] for w in ("train", "validation", "test"))
    assert train["timestamp"].max() + timedelta(days=7) <= validation["timestamp"].min()
    assert validation["timestamp"].max() + timedelta(days=7) <= test["timestamp"].min()
    assert set(train["transaction_id"]).isdisjoint(test["transaction_id"])
    assert outcome.fairness is None
    assert outcome.summary()["split"]["gap_validation_test_days"] == 7.0


def test_protected_attributes_can_never_be_model_inputs():
    spec = FeatureSpec(names=("amount", "gender"), categorical=(), protected=("gender", "age"))
    with pytest.raises(ValidationError, match="protected"):
        labelled_features(pd.DataFrame(), timedelta(days=7), spec)


def test_the_stream_features_hold_no_protected_attribute():
    features = pytest.importorskip("stream.features.definition")
    assert not set(features.PROTECTED_ATTRIBUTES) & set(features.FEATURE_NAMES)
    assert set(features.CATEGORICAL_FEATURES) <= set(features.FEATURE_NAMES)
