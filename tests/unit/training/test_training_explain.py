from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from stream.scoring import ReasonCoder
from training.evaluation import global_importance


def data(n: int = 4000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "amount_ratio": rng.lognormal(0, 0.7, n),
            "channel_code": rng.integers(0, 4, n).astype(float),
            "velocity": rng.poisson(1.0, n).astype(float),
            "noise": rng.normal(size=n),
        }
    )
    X.loc[rng.random(n) < 0.1, "velocity"] = np.nan
    logit = (
        -4
        + 2 * np.log(X["amount_ratio"])
        + 1.5 * (X["channel_code"] == 2)
        + X["velocity"].fillna(3)
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


@functools.cache
def fitted(categorical: bool) -> tuple[HistGradientBoostingClassifier, pd.DataFrame]:
    X, y = data()
    mask = [False, True, False, False] if categorical else None
    model = HistGradientBoostingClassifier(
        max_iter=40, categorical_features=mask, early_stopping=False, random_state=0
    )
    return model.fit(X, y), X


@pytest.mark.parametrize("categorical", [True, False])
def test_contributions_add_up_to_the_model_output(categorical):
    model, X = fitted(categorical)
    rows = X.iloc[:50].copy()
    rows.iloc[0, 1] = 9.0  # a category never seen in training
    coder = ReasonCoder(model, list(X.columns))
    values = coder.contributions(rows)
    assert values.shape == (50, 4)
    np.testing.assert_allclose(
        values.sum(axis=1) + coder.expected_value, model.decision_function(rows), atol=1e-9
    )


def test_matches_shap_where_shap_reads_the_model_correctly():
    import shap

    model, X = fitted(categorical=False)
    rows = X.iloc[:20]
    ours = ReasonCoder(model, list(X.columns)).contributions(rows)
    theirs = shap.TreeExplainer(model).shap_values(rows)
    np.testing.assert_allclose(ours, theirs, atol=1e-9)


def test_reason_codes_name_the_features_that_raised_the_score():
    model, X = fitted(categorical=True)
    coder = ReasonCoder(model, list(X.columns))
    row = pd.DataFrame(
        {"amount_ratio": [8.0], "channel_code": [2.0], "velocity": [np.nan], "noise": [0.0]}
    )
    codes = coder.reason_codes(row, top_k=3)
    assert len(codes) == 1
    features = [item["feature"] for item in codes[0]]
    assert features[0] == "amount_ratio"
    assert set(features) <= {"amount_ratio", "channel_code", "velocity", "noise"}
    contributions = [item["contribution"] for item in codes[0]]
    assert contributions == sorted(contributions, reverse=True)
    assert all(c > 0 for c in contributions)
    by_name = {item["feature"]: item for item in codes[0]}
    assert by_name["amount_ratio"]["value"] == 8.0
    if "velocity" in by_name:
        assert by_name["velocity"]["value"] is None  # missing stays missing
    assert coder.reason_codes(row.iloc[:0]) == []
    assert len(coder.reason_codes(X.iloc[:5], top_k=1)[0]) <= 1


def test_global_importance_ranks_the_driving_feature_first():
    model, X = fitted(categorical=True)
    importance = global_importance(ReasonCoder(model, list(X.columns)), X.iloc[:500])
    assert importance.index[0] == "amount_ratio"
    assert importance["noise"] < importance["amount_ratio"] / 5
