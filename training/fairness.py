"""Fairness audit on the test period: error rates by age band and gender (fairlearn MetricFrame).

The model never sees age or gender; the customers table is joined here only to audit. A
transaction is "selected" when it is alerted (review or decline), the action that inconveniences
a customer. For each attribute the audit reports, per group, the false-positive rate (legitimate
transactions alerted), the true-positive rate (fraud alerted), the selection rate and counts,
with fairlearn's between-group differences and ratios.

The gate (default: false-positive-rate ratio between groups within 0.8-1.25) is judged only on
groups large enough for the ratio to mean something. A rate estimated from k events has a
relative standard error of about 1/sqrt(k); with 100 expected events per group the ratio of two
groups is known to within roughly +-15%, so a 0.8-1.25 band is not failed by chance alone. A
group is therefore judged when (group's base count) x (overall rate) >= `min_expected_events`
(100): for the FPR, its legitimate transactions times the overall FPR. The rule uses the overall
rate, not the group's own, so a group cannot become exempt by having few false positives.
Smaller groups are still reported, with 95% Wilson intervals, and marked "too small to judge";
if fewer than two groups of an attribute can be judged the gate fails closed (it cannot vouch
for what it cannot measure). Transactions of one customer are correlated, so the intervals are
optimistic; this is stated in the model card.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)

GateMetric = Literal["false_positive_rate", "true_positive_rate", "selection_rate"]
AGE_BANDS: tuple[tuple[int, int, str], ...] = (
    (0, 25, "under 25"),
    (25, 35, "25-34"),
    (35, 50, "35-49"),
    (50, 65, "50-64"),
    (65, 200, "65+"),
)
UNKNOWN = "unknown"
ATTRIBUTES = ("age_band", "gender")


@dataclass(frozen=True)
class FairnessGate:
    metric: GateMetric = "false_positive_rate"
    min_ratio: float = 0.8
    max_ratio: float = 1.25
    min_expected_events: float = 100.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def age_band(birth_year: pd.Series, at: pd.Timestamp) -> pd.Series:
    """The age band of each birth year at the date `at` ("unknown" when missing)."""
    age = at.year - pd.to_numeric(birth_year, errors="coerce")
    bands = pd.Series(UNKNOWN, index=birth_year.index, dtype="string")
    for low, high, name in AGE_BANDS:
        bands[(age >= low) & (age < high)] = name
    return bands


def attach_groups(frame: pd.DataFrame, customers: pd.DataFrame, at: pd.Timestamp) -> pd.DataFrame:
    """Age band and gender for each transaction of `frame` (joined by customer_id)."""
    table = customers.drop_duplicates("customer_id").set_index("customer_id")
    birth = table["birth_year"].reindex(frame["customer_id"].astype("string").to_numpy())
    gender = table["gender"].reindex(frame["customer_id"].astype("string").to_numpy())
    return pd.DataFrame(
        {
            "age_band": age_band(birth.reset_index(drop=True), at).to_numpy(),
            "gender": gender.astype("string").fillna(UNKNOWN).to_numpy(),
        },
        index=frame.index,
    )


def wilson_interval(successes: float, trials: float, z: float = 1.96) -> tuple[float, float]:
    if trials <= 0:
        return float("nan"), float("nan")
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def _base_count(metric: GateMetric, negatives: int, positives: int) -> int:
    if metric == "false_positive_rate":
        return negatives
    if metric == "true_positive_rate":
        return positives
    return negatives + positives


def _audit_attribute(
    y: npt.NDArray[np.int64], selected: npt.NDArray[np.int64], groups: pd.Series, gate: FairnessGate
) -> dict[str, Any]:
    metrics = {
        "false_positive_rate": false_positive_rate,
        "true_positive_rate": true_positive_rate,
        "selection_rate": selection_rate,
        "transactions": count,
    }
    frame = MetricFrame(
        metrics=metrics, y_true=y, y_pred=selected, sensitive_features=groups.to_numpy()
    )
    by_group = frame.by_group
    overall_rate = float(frame.overall[gate.metric])
    rows: list[dict[str, Any]] = []
    for group, values in by_group.iterrows():
        members = (groups == group).to_numpy()
        negatives = int((y[members] == 0).sum())
        positives = int((y[members] == 1).sum())
        false_alerts = int(((y == 0) & (selected == 1) & members).sum())
        expected = _base_count(gate.metric, negatives, positives) * overall_rate
        low, high = wilson_interval(false_alerts, negatives)
        rows.append(
            {
                "group": str(group),
                "transactions": int(values["transactions"]),
                "legitimate": negatives,
                "fraud": positives,
                "false_positive_rate": float(values["false_positive_rate"]),
                "fpr_ci95": [low, high],
                "true_positive_rate": float(values["true_positive_rate"]),
                "selection_rate": float(values["selection_rate"]),
                "judged": bool(str(group) != UNKNOWN and expected >= gate.min_expected_events),
            }
        )
    judged = [float(row[gate.metric]) for row in rows if row["judged"]]
    ratio: float | None = None
    if len(judged) < 2:
        passed = False
        detail = f"fewer than two groups large enough to judge {gate.metric} (fails closed)"
    else:
        low_rate, high_rate = min(judged), max(judged)
        if high_rate == 0:  # nobody selected in any judged group: no disparity
            ratio, passed = 1.0, True
        elif low_rate == 0:
            ratio, passed = 0.0, False
        else:
            ratio = low_rate / high_rate
            passed = ratio >= gate.min_ratio and high_rate / low_rate <= gate.max_ratio
        detail = (
            f"{gate.metric} ratio (lowest/highest of judged groups) = {ratio:.3f}; "
            f"band {gate.min_ratio}-{gate.max_ratio}"
        )
    return {
        "groups": rows,
        "difference": {k: float(v) for k, v in frame.difference().items() if k != "transactions"},
        "ratio": {k: float(v) for k, v in frame.ratio().items() if k != "transactions"},
        "overall": {k: float(v) for k, v in frame.overall.items() if k != "transactions"},
        "gate_ratio": ratio,
        "passed": bool(passed),
        "detail": detail,
    }


def audit(
    labels: npt.ArrayLike,
    selected: npt.ArrayLike,
    groups: pd.DataFrame,
    gate: FairnessGate | None = None,
) -> dict[str, Any]:
    """The fairness report for each column of `groups` and whether the gate passes."""
    gate = gate or FairnessGate()
    y = np.asarray(labels, dtype=np.int64)
    chosen = np.asarray(selected, dtype=np.int64)
    attributes = {
        name: _audit_attribute(y, chosen, groups[name].reset_index(drop=True), gate)
        for name in groups.columns
    }
    return {
        "gate": gate.to_dict(),
        "selection": "alerted (review or decline)",
        "attributes": attributes,
        "passed": all(result["passed"] for result in attributes.values()),
    }
