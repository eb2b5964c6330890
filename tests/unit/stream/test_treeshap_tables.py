"""TreeSHAP from precomputed per-path tables equals TreeSHAP computed row by row."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from stream.scoring import treeshap
from tests.unit.training.test_training_explain import fitted

UNLIMITED = 2**40


@functools.cache
def deep_model(categorical: bool) -> tuple[HistGradientBoostingClassifier, pd.DataFrame]:
    """Many features and small leaves: paths with up to a dozen distinct features."""
    rng = np.random.default_rng(1)
    n = 3000
    X = pd.DataFrame(rng.normal(size=(n, 14)), columns=[f"x{i}" for i in range(14)])
    X["code"] = rng.integers(0, 6, n).astype(float)
    X.loc[rng.random(n) < 0.05, "x3"] = np.nan
    logit = (
        X["x0"] * X["x1"] + np.sin(3 * X["x2"]) + (X["code"] == 2) - X.iloc[:, 4:14].sum(axis=1) / 4
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    mask = [False] * 14 + [categorical]
    model = HistGradientBoostingClassifier(
        max_iter=15,
        max_leaf_nodes=31,
        min_samples_leaf=3,
        categorical_features=mask,
        early_stopping=False,
        random_state=0,
    )
    return model.fit(X, y), X


def rows_to_explain(X: pd.DataFrame, code_column: int) -> pd.DataFrame:
    rows = X.iloc[:40].copy()
    rows.iloc[0, code_column] = 9.0  # a category never seen in training
    rows.iloc[1, code_column] = -1.0  # a negative code: missing
    rows.iloc[2, :] = np.nan  # nothing known
    return rows


def explain(model, rows: pd.DataFrame, table_bytes: int) -> tuple[np.ndarray, treeshap.FlatForest]:
    forest = treeshap.flatten_hist_gradient_boosting(model, table_bytes=table_bytes)
    return treeshap.shap_values(forest, treeshap.encode_rows(forest, rows)), forest


@pytest.mark.parametrize("categorical", [True, False])
@pytest.mark.parametrize("model_of", [fitted, deep_model])
def test_tables_give_the_values_of_the_per_row_formula(model_of, categorical):
    model, X = model_of(categorical)
    code_column = 1 if model_of is fitted else 14
    rows = rows_to_explain(X, code_column)
    per_row, none = explain(model, rows, table_bytes=0)
    tabulated, every = explain(model, rows, table_bytes=UNLIMITED)
    assert (none.path_table < 0).all() and none.tables.size == 0
    assert (every.path_table >= 0).all()
    np.testing.assert_allclose(tabulated, per_row, rtol=0, atol=1e-12)
    # Both add up to the model's own output.
    for values in (per_row, tabulated):
        np.testing.assert_allclose(
            values.sum(axis=1) + treeshap.expected_value(every),
            model.decision_function(rows),
            rtol=0,
            atol=1e-9,
        )
    # One row at a time (the usual call) gives the same numbers as the batch.
    single = np.vstack([explain(model, rows.iloc[i : i + 1], UNLIMITED)[0] for i in range(3)])
    np.testing.assert_allclose(single, tabulated[:3], rtol=0, atol=1e-12)


def test_a_budget_tabulates_the_shortest_paths_and_computes_the_rest():
    model, X = deep_model(categorical=True)
    counts = treeshap.flatten_hist_gradient_boosting(model, table_bytes=0).path_elements[:, 1]
    assert counts.max() >= 10  # long paths, with "on" features in high pattern bits
    budget = int(sum(8 * 2**d for d in counts if 0 < d <= 6))
    rows = rows_to_explain(X, 14)
    partly, forest = explain(model, rows, table_bytes=budget)
    assert forest.table_max_elements == 6
    assert forest.tables.nbytes <= budget
    np.testing.assert_array_equal(forest.path_table >= 0, (counts > 0) & (counts <= 6))
    np.testing.assert_allclose(partly, explain(model, rows, 0)[0], rtol=0, atol=1e-12)


def test_tables_match_shap_on_a_model_shap_reads_correctly():
    import shap

    model, X = deep_model(categorical=False)
    rows = X.iloc[:20]
    ours, _ = explain(model, rows, UNLIMITED)
    theirs = shap.TreeExplainer(model).shap_values(rows)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)


def test_a_negative_budget_is_refused():
    model, _ = fitted(categorical=False)
    with pytest.raises(ValueError, match="table_bytes"):
        treeshap.flatten_hist_gradient_boosting(model, table_bytes=-1)
