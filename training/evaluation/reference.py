"""Reference distributions for drift monitoring, stored with each model version.

The score histogram and, for the most important features, bin edges with the share of rows
in each bin, on the validation and test periods. A monitor compares live traffic with these
(population stability index or similar): it bins live values with the same edges, counting
values below the first edge in the first bin and above the last edge in the last bin.
Categorical features get one bin per code instead of edges; missing values get their own share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from stream.monitoring import bin_index

SCORE_EDGES = [0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.8, 0.95, 1.0]


def proportions(values: npt.ArrayLike, edges: Sequence[float]) -> list[float]:
    """Share of the (non-missing) values per bin; out-of-range values go to the end bins."""
    array = np.asarray(values, dtype=float)
    array = array[~np.isnan(array)]
    if array.size == 0:
        return [0.0] * (len(edges) - 1)
    counts = np.bincount(bin_index(edges[1:-1], array), minlength=len(edges) - 1)
    return (counts / array.size).round(6).tolist()


def _numeric_edges(values: pd.Series, bins: int) -> list[float]:
    finite = values.dropna().to_numpy(dtype=float)
    if finite.size == 0:
        return [0.0, 1.0]
    # Rounded before de-duplication so that the stored edges stay strictly increasing.
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)).round(9))
    if edges.size < 2:
        edges = np.array([edges[0], edges[0] + 1.0])
    return [float(edge) for edge in edges]


def _categorical(values: pd.Series) -> dict[str, float]:
    shares = values.dropna().astype(int).value_counts(normalize=True).sort_index()
    return {str(k): round(float(v), 6) for k, v in shares.items()}


def reference_distribution(
    periods: Mapping[str, tuple[npt.ArrayLike, pd.DataFrame]],
    top_features: Sequence[str],
    categorical: Sequence[str],
    bins: int = 10,
    edges_from: str = "validation",
) -> dict[str, Any]:
    """`periods` maps a period name to (scores, feature frame); edges come from `edges_from`."""
    reference_frame = periods[edges_from][1]
    result: dict[str, Any] = {
        "edges_from": edges_from,
        "score": {
            "bin_edges": SCORE_EDGES,
            **{name: proportions(scores, SCORE_EDGES) for name, (scores, _) in periods.items()},
        },
        "features": {},
    }
    for feature in top_features:
        entry: dict[str, Any] = {}
        if feature in categorical:
            entry["kind"] = "categorical"
            for name, (_, frame) in periods.items():
                entry[name] = _categorical(frame[feature])
        else:
            edges = _numeric_edges(reference_frame[feature], bins)
            entry["kind"] = "numeric"
            entry["bin_edges"] = edges
            for name, (_, frame) in periods.items():
                entry[name] = proportions(frame[feature], edges)
        entry["missing_share"] = {
            name: round(float(frame[feature].isna().mean()), 6)
            for name, (_, frame) in periods.items()
        }
        result["features"][feature] = entry
    return result
