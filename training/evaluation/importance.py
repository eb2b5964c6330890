"""Global feature importance: mean absolute SHAP contribution per feature over a window."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stream.scoring import ReasonCoder


def global_importance(coder: ReasonCoder, X: pd.DataFrame) -> pd.Series:
    """Mean absolute contribution per feature over X, largest first."""
    values = coder.contributions(X)
    importance = pd.Series(np.abs(values).mean(axis=0), index=coder.feature_names)
    return importance.sort_values(ascending=False)
