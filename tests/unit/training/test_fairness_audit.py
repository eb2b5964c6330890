from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.evaluation import FairnessGate, age_band, attach_groups, audit


def group_frame(
    spec: dict[str, tuple[int, int, int, int]],
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """spec: group -> (legitimate, legitimate alerted, fraud, fraud alerted)."""
    y, selected, groups = [], [], []
    for group, (legit, false_alerts, fraud, caught) in spec.items():
        y += [0] * legit + [1] * fraud
        selected += [1] * false_alerts + [0] * (legit - false_alerts)
        selected += [1] * caught + [0] * (fraud - caught)
        groups += [group] * (legit + fraud)
    return np.array(y), np.array(selected), pd.DataFrame({"gender": groups})


def test_rates_differences_and_ratios_by_hand():
    y, selected, groups = group_frame({"F": (100, 10, 10, 8), "M": (200, 10, 20, 10)})
    result = audit(y, selected, groups, FairnessGate(min_expected_events=1))["attributes"]["gender"]
    rows = {row["group"]: row for row in result["groups"]}
    assert rows["F"]["false_positive_rate"] == pytest.approx(0.10)
    assert rows["M"]["false_positive_rate"] == pytest.approx(0.05)
    assert rows["F"]["true_positive_rate"] == pytest.approx(0.8)
    assert rows["M"]["true_positive_rate"] == pytest.approx(0.5)
    assert rows["F"]["selection_rate"] == pytest.approx(18 / 110)
    assert rows["M"]["selection_rate"] == pytest.approx(20 / 220)
    assert result["difference"]["false_positive_rate"] == pytest.approx(0.05)
    assert result["ratio"]["false_positive_rate"] == pytest.approx(0.5)
    assert result["ratio"]["true_positive_rate"] == pytest.approx(0.625)
    assert result["gate_ratio"] == pytest.approx(0.5)
    low, high = rows["F"]["gate_metric_ci95"]
    assert low < 0.10 < high


def test_a_large_clear_disparity_fails():
    y, selected, groups = group_frame({"F": (2000, 200, 10, 8), "M": (2000, 100, 10, 9)})
    report = audit(y, selected, groups, FairnessGate(min_expected_events=20))
    result = report["attributes"]["gender"]
    assert result["gate_ratio"] == pytest.approx(0.5)
    assert result["gate_ratio_ci95"][1] < 1.0
    assert not result["passed"] and not report["passed"]


def test_gate_passes_inside_the_band():
    y, selected, groups = group_frame({"F": (1000, 50, 10, 8), "M": (1000, 45, 10, 9)})
    report = audit(y, selected, groups, FairnessGate(min_expected_events=20))
    assert report["attributes"]["gender"]["gate_ratio"] == pytest.approx(0.9)
    assert report["passed"] and not report["warnings"]


def test_a_gap_made_by_a_few_customers_only_warns():
    # M's 100 false alerts come from two of its 100 customers; F's 70 are spread out.
    y, selected, groups = group_frame({"F": (2000, 70, 0, 0), "M": (2000, 100, 0, 0)})
    f_customers = [f"f{i % 100}" for i in range(2000)]
    m_customers = ["m0"] * 50 + ["m1"] * 50 + [f"m{2 + i % 98}" for i in range(1900)]
    clusters = np.array(f_customers + m_customers)
    gate = FairnessGate(min_expected_events=20)
    clustered = audit(y, selected, groups, gate, clusters=clusters)
    assert clustered["attributes"]["gender"]["gate_ratio"] == pytest.approx(0.7)
    assert clustered["passed"] and clustered["attributes"]["gender"]["warning"]
    assert clustered["warnings"]
    # Treating the same rows as independent would call the gap significant.
    independent = audit(y, selected, groups, gate)
    assert not independent["passed"]


def test_small_groups_are_reported_but_not_judged():
    # "X" has 20 legitimate transactions: 20 x overall FPR (~5%) = 1 expected false alert.
    y, selected, groups = group_frame(
        {"F": (1000, 50, 10, 8), "M": (1000, 50, 10, 9), "X": (20, 5, 0, 0)}
    )
    report = audit(y, selected, groups, FairnessGate(min_expected_events=20))
    rows = {row["group"]: row for row in report["attributes"]["gender"]["groups"]}
    assert rows["X"]["false_positive_rate"] == pytest.approx(0.25)
    assert not rows["X"]["judged"]
    assert rows["F"]["judged"] and rows["M"]["judged"]
    assert report["passed"]


def test_gate_fails_closed_when_too_few_groups_can_be_judged():
    y, selected, groups = group_frame({"F": (50, 2, 2, 1), "M": (50, 2, 2, 1)})
    report = audit(y, selected, groups, FairnessGate(min_expected_events=100))
    assert not report["passed"]
    assert "fails closed" in report["attributes"]["gender"]["detail"]


def test_age_bands_at_the_test_date_and_join_by_customer():
    at = pd.Timestamp("2026-03-01", tz="UTC")
    bands = age_band(pd.Series([2005, 2001, 1990, 1970, 1961, 1950, None]), at)
    assert list(bands) == ["under 25", "25-34", "35-49", "50-64", "65+", "65+", "unknown"]
    customers = pd.DataFrame(
        {"customer_id": ["c1", "c2"], "birth_year": [1990, 1950], "gender": ["F", "M"]}
    )
    frame = pd.DataFrame({"customer_id": ["c2", "c1", "c9"]})
    groups = attach_groups(frame, customers, at)
    assert list(groups["age_band"]) == ["65+", "35-49", "unknown"]
    assert list(groups["gender"]) == ["M", "F", "unknown"]
