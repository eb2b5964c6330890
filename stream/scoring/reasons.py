"""Reason codes: the features that raised each transaction's fraud score the most.

Contributions are SHAP values in log-odds. For the default model (HistGradientBoosting with
declared categorical features) they come from `stream.scoring.treeshap`, which runs TreeSHAP over
the model's own trees; shap's TreeExplainer reads such models wrongly (see that module). Other
tree models (the RandomForest baseline) go through shap's TreeExplainer.

The scorer calls `ReasonCoder.reason_codes` on the review/decline rows of each batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from stream.scoring import treeshap


class ReasonCoder:
    """Built once per loaded model; cheap to call on small batches."""

    def __init__(self, model: Any, feature_names: Sequence[str]) -> None:
        self.model = model
        self.feature_names = list(feature_names)
        self.forest: treeshap.FlatForest | None = None
        self._explainer: Any = None
        if type(model).__name__ == "HistGradientBoostingClassifier":
            self.forest = treeshap.flatten_hist_gradient_boosting(model)
            self.expected_value = treeshap.expected_value(self.forest)
        else:
            import shap

            self._explainer = shap.TreeExplainer(model)
            self.expected_value = float(np.ravel(self._explainer.expected_value)[-1])

    def _matrix(self, X: pd.DataFrame | npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Rows as floats in `feature_names` order: a DataFrame's columns are picked by name,
        a matrix is taken to be in that order already."""
        if isinstance(X, pd.DataFrame):
            return X[self.feature_names].to_numpy(dtype=float)
        return np.asarray(X, dtype=float).reshape(-1, len(self.feature_names))

    def contributions(self, X: pd.DataFrame | npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """SHAP values, one row per transaction, columns in `feature_names` order."""
        frame = self._matrix(X)
        if self.forest is not None:
            return treeshap.shap_values(self.forest, treeshap.encode_rows(self.forest, frame))
        values = self._explainer.shap_values(frame, check_additivity=False)
        values = np.asarray(values, dtype=float)
        if values.ndim == 3:  # (rows, features, classes): keep the fraud class
            values = values[:, :, -1]
        return values

    def reason_codes(
        self, X: pd.DataFrame | npt.NDArray[np.float64], top_k: int = 3
    ) -> list[list[dict[str, Any]]]:
        """For each row, the `top_k` features that raised its fraud score the most.

        Each item is {"feature", "value" (None when missing), "contribution" (log-odds)}. Only
        features that pushed the score up are reasons; a row may have fewer than `top_k`.
        """
        if len(X) == 0:
            return []
        raw = self._matrix(X)
        values = self.contributions(raw)
        order = np.argsort(-values, axis=1, kind="stable")[:, :top_k]
        result: list[list[dict[str, Any]]] = []
        for row, columns in enumerate(order):
            reasons = []
            for column in columns:
                contribution = float(values[row, column])
                if contribution <= 0.0:
                    break
                value = float(raw[row, column])
                reasons.append(
                    {
                        "feature": self.feature_names[column],
                        "value": None if math.isnan(value) else value,
                        "contribution": round(contribution, 6),
                    }
                )
            result.append(reasons)
        return result
