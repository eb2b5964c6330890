"""The compiled forest walk gives the model's own probabilities, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from stream.scoring import MatrixModel
from tests.unit.training.test_training_explain import data, fitted


@pytest.mark.parametrize("categorical", [True, False])
def test_probabilities_equal_the_models_own(categorical):
    model, X = fitted(categorical)
    rows = X.iloc[:400].copy()
    rows.iloc[0, 1] = 9.0  # a category never seen in training
    rows.iloc[1, 1] = -1.0  # a negative code: missing, as the model reads it
    rows.iloc[2, :] = np.nan  # nothing known
    rows.iloc[3, 0] = 1e300
    compiled = MatrixModel(model, list(X.columns))
    expected = model.predict_proba(rows)[:, 1]
    np.testing.assert_array_equal(compiled.predict_proba(rows.to_numpy()), expected)
    # One row at a time (the HTTP path) gives the same numbers.
    single = [compiled.predict_proba(rows.to_numpy()[i : i + 1])[0] for i in range(5)]
    np.testing.assert_array_equal(single, expected[:5])


def test_reason_codes_from_a_matrix_equal_those_from_a_frame():
    model, X = fitted(categorical=True)
    compiled = MatrixModel(model, list(X.columns))
    rows = X.iloc[:20]
    assert compiled.reason_codes(rows.to_numpy()) == compiled.coder.reason_codes(rows)


def test_other_models_use_their_own_predict_proba():
    X, y = data(n=600)
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X.fillna(0), y)
    compiled = MatrixModel(forest, list(X.columns))
    rows = X.fillna(0).iloc[:30]
    np.testing.assert_array_equal(
        compiled.predict_proba(rows.to_numpy()), forest.predict_proba(rows)[:, 1]
    )
