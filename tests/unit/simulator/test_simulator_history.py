"""History files: the output contract, determinism and the manifest."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas import validator
from simulator.bank import Bank
from simulator.history import FILES, MANIFEST, sha256_file, write_history
from simulator.rows import HISTORY_SCHEMA, history_records

COLUMNS = [
    "transaction_id",
    "timestamp",
    "card_id",
    "customer_id",
    "terminal_id",
    "merchant_category",
    "channel",
    "amount",
    "currency",
    "terminal_lat",
    "terminal_lon",
    "customer_lat",
    "customer_lon",
    "device_id",
    "country",
    "is_fraud",
    "fraud_scenario",
]
SMALL = {"customers": 300, "days": 6, "seed": 5}


@pytest.fixture(scope="module")
def small_history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("history")
    write_history(out, **SMALL, start=dt.date(2026, 2, 27))  # spans a month end
    return out


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(
    small_history: Path, tmp_path: Path
) -> None:
    write_history(tmp_path / "again", **SMALL, start=dt.date(2026, 2, 27))
    for name in (*FILES, MANIFEST):
        assert sha256_file(small_history / name) == sha256_file(tmp_path / "again" / name), name
    write_history(tmp_path / "other", **{**SMALL, "seed": 6}, start=dt.date(2026, 2, 27))
    for name in FILES:
        assert sha256_file(small_history / name) != sha256_file(tmp_path / "other" / name), name


def test_parquet_has_the_contract_columns_types_and_order(small_history: Path) -> None:
    table = pq.read_table(small_history / "transactions.parquet")
    assert table.column_names == COLUMNS
    assert table.schema.equals(HISTORY_SCHEMA)
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    metadata = pq.ParquetFile(small_history / "transactions.parquet").metadata.metadata
    assert set(metadata) == {b"ARROW:schema"}  # nothing time-dependent in the file


def test_rows_are_sorted_unique_and_consistent(small_history: Path) -> None:
    frame = pd.read_parquet(small_history / "transactions.parquet")
    assert frame["transaction_id"].is_unique
    assert frame["transaction_id"].iloc[0] == "tx-000000001"
    keys = list(zip(frame["timestamp"], frame["transaction_id"], strict=True))
    assert keys == sorted(keys)
    assert frame["timestamp"].min() >= pd.Timestamp("2026-02-27", tz="UTC")
    assert frame["timestamp"].max() < pd.Timestamp("2026-03-05", tz="UTC")
    assert (frame["fraud_scenario"].isna() == (frame["is_fraud"] == 0)).all()
    assert set(frame["is_fraud"]) == {0, 1}
    assert frame["card_id"].str.fullmatch(r"card-\d{5}").all()
    assert (frame["amount"] > 0).all() and (frame["amount"].round(2) == frame["amount"]).all()
    assert set(frame["channel"]) == {"pos", "ecom", "atm"}
    assert set(frame["currency"]) == {"EUR"}
    ecom = frame["channel"] == "ecom"
    assert frame.loc[ecom, "terminal_lat"].isna().all()
    assert frame.loc[~ecom, ["terminal_lat", "terminal_lon"]].notna().all().all()
    assert frame.loc[ecom, "device_id"].notna().all()
    assert frame.loc[~ecom, "device_id"].isna().all()
    # A card always belongs to the same customer.
    assert (frame.groupby("card_id")["customer_id"].nunique() == 1).all()


def test_every_row_validates_against_history_row(small_history: Path) -> None:
    validate = validator("history_row")
    records = history_records(pq.read_table(small_history / "transactions.parquet"))
    assert len(records) > 3000
    for record in records:
        validate(record)
    # Nulls are dropped, not sent as None: ecom rows have no location, shop rows no device.
    ecom = next(r for r in records if r["channel"] == "ecom")
    shop = next(r for r in records if r["channel"] == "pos")
    assert "terminal_lat" not in ecom and "device_id" in ecom
    assert "device_id" not in shop and "terminal_lat" in shop
    assert "fraud_scenario" not in shop or shop["is_fraud"] == 1


def test_csv_holds_the_same_rows_with_iso_timestamps(small_history: Path) -> None:
    parquet = pd.read_parquet(small_history / "transactions.parquet")
    csv = pd.read_csv(small_history / "transactions.csv", dtype={"merchant_category": str})
    assert list(csv.columns) == COLUMNS
    assert csv["timestamp"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all()
    assert (pd.to_datetime(csv["timestamp"], utc=True) == parquet["timestamp"]).all()
    for column in ("transaction_id", "card_id", "merchant_category", "fraud_scenario"):
        assert csv[column].fillna("").tolist() == parquet[column].fillna("").tolist(), column
    np.testing.assert_array_equal(csv["amount"], parquet["amount"])
    np.testing.assert_array_equal(csv["terminal_lat"], parquet["terminal_lat"])


def test_customers_table_matches_the_bank(small_history: Path) -> None:
    customers = pd.read_parquet(small_history / "customers.parquet")
    assert list(customers.columns) == [
        "customer_id",
        "birth_year",
        "gender",
        "home_lat",
        "home_lon",
        "segment",
    ]
    bank = Bank.build(SMALL["customers"], SMALL["seed"])
    assert customers["customer_id"].tolist() == bank.customer_ids.to_pylist()
    assert set(customers["gender"]) == {"F", "M"}
    assert set(customers["segment"]) <= {"mass", "affluent", "student", "senior"}
    ages = 2026 - customers["birth_year"]
    assert ages.between(18, 90).all()
    assert (customers.loc[customers["segment"] == "student", "birth_year"] >= 2026 - 25).all()
    csv = pd.read_csv(small_history / "customers.csv")
    pd.testing.assert_frame_equal(csv, customers, check_dtype=False)
    transactions = pd.read_parquet(small_history / "transactions.parquet")
    assert set(transactions["customer_id"]) <= set(customers["customer_id"])


def test_manifest_describes_the_run(small_history: Path) -> None:
    manifest = json.loads((small_history / MANIFEST).read_text())
    frame = pd.read_parquet(small_history / "transactions.parquet")
    assert manifest["seed"] == SMALL["seed"]
    assert manifest["parameters"]["customers"] == SMALL["customers"]
    assert manifest["start_date"] == "2026-02-27" and manifest["end_date"] == "2026-03-04"
    assert manifest["rows"]["transactions"] == len(frame)
    assert manifest["rows"]["customers"] == SMALL["customers"]
    assert manifest["fraud_rate"] == pytest.approx(frame["is_fraud"].mean(), abs=1e-6)
    counts = frame["fraud_scenario"].value_counts().to_dict()
    assert {k: v for k, v in manifest["fraud_by_scenario"].items() if v} == counts
    assert set(manifest["fraud_by_scenario"]) == {
        "card_testing",
        "account_takeover",
        "compromised_terminal",
        "high_amount",
        "impossible_travel",
        "mimicry",
    }
    for name in FILES:
        assert manifest["files"][name] == sha256_file(small_history / name)


def test_bank_is_a_function_of_customers_and_seed() -> None:
    first, second = Bank.build(400, 9), Bank.build(400, 9)
    for name in ("birth_year", "home_lat", "favourite_shops", "card_customer", "terminal_mcc"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert not np.array_equal(first.home_lat, Bank.build(400, 10).home_lat)
    with pytest.raises(ValueError, match="customers"):
        Bank.build(0, 1)


def test_device_ids_that_hold_a_card_number_are_tokenised_not_refused() -> None:
    """A hex device id whose four groups are all digits may pass the Luhn check (a few in
    100,000): the edge tokenises the number inside it, and the transaction is still decided."""
    import orjson

    from schemas import validator
    from stream.edge import Admitted, PanKey, Source, admit, contains_pan

    bank = Bank.build(50, 1)
    devices = np.arange(200_000)
    ids = bank.device_ids(devices)
    assert len(set(ids)) == len(ids)  # one token per device index
    assert {len(token) for token in ids if token is not None} == {len("dev-0000-0000-0000-0000")}
    longest_run = max(len(run) for token in ids for run in re.findall(r"[0-9]+", token or "0"))
    assert longest_run <= 4
    holding = [token for token in ids if token is not None and contains_pan(token)]
    assert len(holding) < 20
    event = {
        "transaction_id": "tx-1",
        "timestamp": "2026-03-02T10:00:00Z",
        "card_id": "card-1",
        "customer_id": "cust-1",
        "terminal_id": "term-1",
        "merchant_category": "5411",
        "channel": "ecom",
        "amount": 10.0,
        "currency": "EUR",
    }
    for token in holding:
        result = admit(
            orjson.dumps({**event, "device_id": token}),
            Source("transactions", 0, 0),
            validator("transaction"),
            PanKey("k1", b"key"),
        )
        assert isinstance(result, Admitted), result
        assert result.event["device_id"].startswith("dev-tok_")
    assert bank.device_ids(devices[:100]) == Bank.build(50, 1).device_ids(devices[:100])
