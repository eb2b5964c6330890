from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraud.errors import ValidationError
from training.data import REQUIRED_COLUMNS, read_history, validate_customers, validate_history


def history(n: int = 8) -> pd.DataFrame:
    stamps = pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC").astype(
        "datetime64[us, UTC]"
    )
    return pd.DataFrame(
        {
            "transaction_id": [f"tx{i}" for i in range(n)],
            "timestamp": stamps,
            "card_id": ["card_a", "card_b"] * (n // 2),
            "customer_id": ["c1", "c2"] * (n // 2),
            "terminal_id": ["t1"] * n,
            "merchant_category": ["0742"] * n,
            "channel": ["pos", "ecom"] * (n // 2),
            "amount": np.linspace(5, 50, n),
            "currency": ["EUR"] * n,
            "terminal_lat": [40.0] * n,
            "terminal_lon": [-3.0] * n,
            "is_fraud": [0] * (n - 1) + [1],
            "fraud_scenario": [None] * (n - 1) + ["card_testing"],
        }
    )


def problem(report, column, fragment):
    found = [p for p in report.problems if p.column == column and fragment in p.check]
    assert found, [p.describe() for p in report.problems]
    return found[0]


def test_clean_history_passes_and_keeps_every_row():
    result = validate_history(history())
    assert result.report.passed
    assert result.report.rows_kept == 8
    assert result.report.rows_rejected == 0
    assert result.report.problems == []
    assert result.rejected.empty


def test_rows_without_a_label_yet_are_kept_and_marked():
    frame = history(10)
    frame["is_fraud"] = frame["is_fraud"].astype("Int64")
    frame.loc[[7, 8], "is_fraud"] = pd.NA  # verdicts still pending
    result = validate_history(frame)
    report = result.report
    assert report.passed and report.rows_kept == 10 and report.rows_unlabelled == 2
    assert "2 without a label yet" in report.summary_lines()[0]
    kept = result.frame.set_index("transaction_id")
    assert kept.loc[["tx7", "tx8"], "is_labelled"].tolist() == [False, False]
    assert kept.loc[["tx7", "tx8"], "is_fraud"].tolist() == [0, 0]  # no confirmed fraud
    assert kept["is_labelled"].sum() == 8 and kept.loc["tx9", "is_fraud"] == 1
    frame.loc[9, "is_fraud"] = pd.NA  # the only fraud's verdict pending: nothing to learn
    assert not validate_history(frame).report.passed


def test_bad_rows_are_rejected_counted_and_kept_for_inspection():
    frame = history(10)
    frame.loc[1, "amount"] = -4.0  # range
    frame.loc[2, "is_fraud"] = 3  # not a label
    frame.loc[3, "channel"] = "phone"  # unknown channel
    frame.loc[4, "terminal_lat"] = 123.0  # out of range
    frame.loc[5, "transaction_id"] = "tx0"  # duplicate id
    frame.loc[6, "merchant_category"] = "74"  # not four digits
    result = validate_history(frame, max_rejected_share=0.0)
    report = result.report
    assert report.rows_read == 10
    assert report.rows_rejected == 6
    assert report.rows_kept == 4
    assert not report.passed
    assert sorted(result.rejected.index) == [1, 2, 3, 4, 5, 6]
    assert problem(report, "amount", "greater_than").rows == 1
    assert problem(report, "is_fraud", "isin").rows == 1
    assert problem(report, "channel", "isin").rows == 1
    assert problem(report, "terminal_lat", "in_range").rows == 1
    assert problem(report, "transaction_id", "duplicate").rows == 1
    assert problem(report, "merchant_category", "str_matches").rows == 1
    assert set(result.frame["transaction_id"]) == {"tx0", "tx7", "tx8", "tx9"}


def test_rejected_share_within_the_limit_passes():
    frame = history(10)
    frame.loc[1, "amount"] = 0.0
    assert validate_history(frame, max_rejected_share=0.1).report.passed
    assert not validate_history(frame, max_rejected_share=0.05).report.passed


def test_unparseable_times_and_amounts_are_reported_not_dropped_silently():
    frame = history(6).astype({"timestamp": "string", "amount": "object"})
    frame.loc[0, "timestamp"] = "yesterday"
    frame.loc[3, "amount"] = "ten"
    report = validate_history(frame).report
    assert problem(report, "timestamp", "ISO 8601").rows == 1
    assert problem(report, "amount", "not a number").rows == 1
    assert report.rows_rejected == 2


def test_out_of_order_rows_are_sorted_and_reported():
    frame = history(6).iloc[[0, 2, 1, 3, 5, 4]]
    result = validate_history(frame)
    assert result.report.rows_out_of_order == 2
    assert result.report.passed  # a warning, not a reason to reject
    assert list(result.frame["transaction_id"]) == [f"tx{i}" for i in range(6)]
    assert problem(result.report, "timestamp", "out of time order").severity == "warning"


def test_missing_required_column_is_an_error_naming_it():
    with pytest.raises(ValidationError, match="card_id"):
        validate_history(history().drop(columns=["card_id"]))


def test_labels_must_include_fraud_and_legitimate():
    frame = history()
    frame["is_fraud"] = 0
    report = validate_history(frame).report
    assert not report.passed
    assert problem(report, "is_fraud", "both 0 and 1")


def test_minimal_history_loads_for_backtests(tmp_path):
    minimal = history()[list(REQUIRED_COLUMNS)]
    path = tmp_path / "minimal.csv"
    out = minimal.copy()
    out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    out.to_csv(path, index=False)
    result = validate_history(read_history(path))
    assert result.report.passed
    assert result.report.rows_kept == 8
    assert "channel" in result.report.missing_optional_columns
    assert str(result.frame["timestamp"].dtype) == "datetime64[us, UTC]"


def test_csv_keeps_leading_zeros_of_merchant_codes(tmp_path):
    path = tmp_path / "h.csv"
    history().to_csv(path, index=False)
    frame = read_history(path)
    assert frame["merchant_category"].iloc[0] == "0742"
    assert validate_history(frame).report.passed


def test_customers_with_bad_rows_are_reported():
    customers = pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c2", "c3"],
            "birth_year": [1980, 1990, 1991, 1850],
            "gender": ["F", "M", "M", "X"],
        }
    )
    clean, problems = validate_customers(customers)
    assert list(clean["customer_id"]) == ["c1", "c2"]
    checks = {(p.column, p.check) for p in problems}
    assert ("customer_id", "duplicate customer_id") in checks
    assert any(column == "birth_year" for column, _ in checks)
    assert any(column == "gender" for column, _ in checks)
