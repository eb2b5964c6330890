"""The detection study's oracle: the simulator's hidden facts, rebuilt from a history's manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.detection import ORACLE_FEATURES, main, oracle_features
from fraud.errors import ValidationError
from simulator.bank import Bank
from simulator.history import write_history

CUSTOMERS, DAYS, SEED = 600, 14, 5


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    out: Path = tmp_path_factory.mktemp("detection")
    write_history(out, customers=CUSTOMERS, days=DAYS, seed=SEED)
    return out, pd.read_parquet(out / "transactions.parquet")


def test_oracle_knows_the_customers_regular_terminals_and_devices(
    simulated: tuple[Path, pd.DataFrame],
) -> None:
    _, history = simulated
    oracle = oracle_features(history, Bank.build(CUSTOMERS, SEED))
    assert list(oracle.columns) == list(ORACLE_FEATURES)
    genuine = history["is_fraud"] == 0
    shop = genuine & (history["channel"] == "pos")
    online = genuine & (history["channel"] == "ecom")
    # Genuine shop purchases go to favourite shops except on trips (a few percent).
    assert oracle.loc[shop, "oracle_favourite_terminal"].mean() > 0.9
    # Genuine online purchases: 97% from the customer's own devices, 90% at favourite sites.
    assert 0.94 < oracle.loc[online, "oracle_own_device"].mean() < 1.0
    assert 0.85 < oracle.loc[online, "oracle_favourite_terminal"].mean() < 0.95
    # No device: no answer. Card testing always comes from a device no customer owns.
    assert oracle.loc[history["device_id"].isna(), "oracle_own_device"].isna().all()
    testing = history["fraud_scenario"] == "card_testing"
    assert testing.any() and (oracle.loc[testing, "oracle_own_device"] == 0).all()
    # Genuine amounts are lognormal around the typical amount (sigma 0.6: log-mean -0.18).
    log_ratio = oracle.loc[genuine & (history["channel"] != "atm"), "oracle_log_amount_to_typical"]
    assert abs(log_ratio.mean() + 0.18) < 0.05
    assert abs(log_ratio.std() - 0.6) < 0.05
    assert (oracle["oracle_daily_rate"] > 0).all()


def test_oracle_refuses_a_history_of_another_bank(simulated: tuple[Path, pd.DataFrame]) -> None:
    _, history = simulated
    with pytest.raises(ValidationError, match="does not have"):
        oracle_features(history, Bank.build(CUSTOMERS // 2, SEED))
    assert np.isfinite(
        oracle_features(history.head(10), Bank.build(CUSTOMERS, SEED)).iloc[:, 2]
    ).all()


def test_study_needs_a_simulated_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--history", str(tmp_path)]) == 2
    assert "simulate a history first" in capsys.readouterr().out
    (tmp_path / "manifest.json").write_text(json.dumps({"generator": "bank export"}))
    assert main(["--history", str(tmp_path)]) == 2
    assert "not written by the simulator" in capsys.readouterr().out
