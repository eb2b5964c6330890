"""Fraud scenarios and genuine behaviour, checked on a moderately sized history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.bank import Bank
from simulator.catalog import MCC_CODES, RISKY_ECOM_MCCS, haversine_km
from simulator.engine import Engine
from simulator.history import write_history
from simulator.rows import SCENARIO_NAMES
from simulator.scenarios import DEFAULT_SCENARIOS, parse_scenarios

SIX = (
    "card_testing",
    "account_takeover",
    "compromised_terminal",
    "high_amount",
    "impossible_travel",
    "mimicry",
)
# Large enough for a stable fraud rate and every scenario, small enough to run in ~2 s.
CUSTOMERS, DAYS, SEED = 2000, 28, 21


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    out: Path = tmp_path_factory.mktemp("moderate")
    write_history(out, customers=CUSTOMERS, days=DAYS, seed=SEED)
    frame = pd.read_parquet(out / "transactions.parquet")
    customers = pd.read_parquet(out / "customers.parquet")
    return frame.merge(customers, on="customer_id", how="left", validate="many_to_one")


@pytest.fixture(scope="module")
def genuine(history: pd.DataFrame) -> pd.DataFrame:
    return history[history["is_fraud"] == 0]


def _fraud(history: pd.DataFrame, name: str) -> pd.DataFrame:
    rows = history[history["fraud_scenario"] == name]
    assert len(rows) > 0, f"no {name} rows"
    return rows


def test_defaults_are_the_six_scenarios_and_atm_cashout_is_held_back(
    history: pd.DataFrame,
) -> None:
    assert DEFAULT_SCENARIOS == SIX
    assert set(history["fraud_scenario"].dropna()) == set(SIX)
    assert parse_scenarios("mimicry, atm_cashout") == ("mimicry", "atm_cashout")
    with pytest.raises(ValueError, match="unknown scenario nope"):
        parse_scenarios("mimicry,nope")


def test_overall_fraud_rate_and_volume_are_in_range(history: pd.DataFrame) -> None:
    rate = history["is_fraud"].mean()
    assert 0.003 <= rate <= 0.01, rate
    per_customer_day = len(history) / CUSTOMERS / DAYS
    assert 1.5 <= per_customer_day <= 3.0, per_customer_day
    cards_per_customer = history.groupby("customer_id")["card_id"].nunique()
    assert set(cards_per_customer) == {1, 2}
    shares = history["fraud_scenario"].value_counts(normalize=True)
    assert (shares > 0.05).all(), shares  # no scenario is negligible


def test_daily_and_weekly_seasonality(genuine: pd.DataFrame) -> None:
    by_hour = genuine.groupby(genuine["timestamp"].dt.hour).size()
    assert by_hour.loc[[12, 17, 18]].min() > 8 * by_hour.loc[[2, 3, 4]].max()
    shops = genuine[genuine["channel"] == "pos"]
    per_weekday = shops.groupby(shops["timestamp"].dt.day_of_week).size() / 4  # 4 weeks
    assert per_weekday[5] > 1.25 * per_weekday[6]  # Saturday busier than Sunday
    online = genuine[genuine["channel"] == "ecom"]
    online_share = (
        online.groupby(online["timestamp"].dt.day_of_week).size()
        / genuine.groupby(genuine["timestamp"].dt.day_of_week).size()
    )
    assert online_share[6] > 1.2 * online_share[:5].mean()  # Sundays are for online shopping


def test_genuine_shopping_is_near_home_with_some_travel(genuine: pd.DataFrame) -> None:
    shops = genuine[genuine["channel"] != "ecom"]
    km = haversine_km(
        shops["customer_lat"], shops["customer_lon"], shops["terminal_lat"], shops["terminal_lon"]
    )
    assert np.median(km) < 10
    abroad = (shops["country"] != "FR").mean()
    assert 0.002 < abroad < 0.05, abroad
    assert 0.15 < (genuine["channel"] == "ecom").mean() < 0.35


def test_card_testing_is_bursts_of_small_online_amounts(
    history: pd.DataFrame, genuine: pd.DataFrame
) -> None:
    rows = _fraud(history, "card_testing")
    assert (rows["channel"] == "ecom").all()
    assert rows["amount"].between(0.5, 5.0).all()
    assert rows["device_id"].notna().all()
    assert not set(rows["device_id"]) & set(genuine["device_id"].dropna())
    bursts = rows.groupby("card_id")["timestamp"].agg(["size", "min", "max"])
    assert (bursts["size"] >= 3).all()
    assert ((bursts["max"] - bursts["min"]) < pd.Timedelta(hours=1)).mean() > 0.8


def test_account_takeover_is_big_risky_online_spending_from_a_new_device(
    history: pd.DataFrame, genuine: pd.DataFrame
) -> None:
    rows = _fraud(history, "account_takeover")
    assert (rows["channel"] == "ecom").all()
    assert rows["merchant_category"].isin([MCC_CODES[i] for i in RISKY_ECOM_MCCS]).all()
    assert (rows["country"] != "FR").mean() > 0.6
    own_devices = genuine.groupby("card_id")["device_id"].agg(lambda s: set(s.dropna()))
    reused = [
        device in own_devices.get(card, set())
        for card, device in zip(rows["card_id"], rows["device_id"], strict=True)
    ]
    assert not any(reused)
    assert rows["amount"].median() > 5 * genuine["amount"].median()


def test_compromised_terminal_victims_shared_a_shop_before_fraud_elsewhere(
    history: pd.DataFrame,
) -> None:
    rows = _fraud(history, "compromised_terminal")
    assert rows["channel"].isin(["pos", "atm"]).all()
    km = haversine_km(
        rows["customer_lat"], rows["customer_lon"], rows["terminal_lat"], rows["terminal_lon"]
    )
    assert (km > 50).all()  # another city or abroad, never the neighbourhood
    first_fraud = rows.groupby("card_id")["timestamp"].min()
    victims = history[history["card_id"].isin(first_fraud.index) & (history["is_fraud"] == 0)]
    before = victims[victims["timestamp"] < victims["card_id"].map(first_fraud)]
    shop_visits = before[before["channel"] == "pos"].groupby("terminal_id")["card_id"].nunique()
    skimmers = set(shop_visits[shop_visits >= 3].index)
    visited_a_skimmer = before[before["terminal_id"].isin(skimmers)]["card_id"].nunique()
    assert visited_a_skimmer >= 0.9 * len(first_fraud)


def test_high_amount_is_far_above_the_cards_usual_spending(
    history: pd.DataFrame, genuine: pd.DataFrame
) -> None:
    rows = _fraud(history, "high_amount")
    assert (rows["amount"] >= 600).all()
    usual = genuine.groupby("card_id")["amount"].median()
    ratio = rows["amount"] / rows["card_id"].map(usual)
    assert ratio.median() > 20


def test_impossible_travel_needs_a_speed_no_traveller_reaches(history: pd.DataFrame) -> None:
    present = history[history["channel"] != "ecom"].sort_values(["timestamp", "transaction_id"])
    previous = present.groupby("card_id")[
        ["timestamp", "terminal_lat", "terminal_lon", "fraud_scenario"]
    ].shift()
    rows = present["fraud_scenario"] == "impossible_travel"
    first = rows & (previous["fraud_scenario"] != "impossible_travel")
    assert first.sum() > 20
    km = haversine_km(
        previous.loc[first, "terminal_lat"],
        previous.loc[first, "terminal_lon"],
        present.loc[first, "terminal_lat"],
        present.loc[first, "terminal_lon"],
    )
    hours = (present.loc[first, "timestamp"] - previous.loc[first, "timestamp"]).dt.total_seconds()
    hours = hours / 3600
    assert (km > 1000).all() and (hours <= 1).all()
    assert (km / hours > 1000).all()  # faster than any airliner


def test_mimicry_looks_like_the_cards_own_behaviour(
    history: pd.DataFrame, genuine: pd.DataFrame
) -> None:
    rows = _fraud(history, "mimicry")
    usual_categories = genuine.groupby("customer_id")["merchant_category"].agg(set)
    familiar = [
        mcc in usual_categories.get(c, set())
        for c, mcc in zip(rows["customer_id"], rows["merchant_category"], strict=True)
    ]
    assert np.mean(familiar) > 0.8
    usual_amount = genuine.groupby("customer_id")["amount"].median()
    ratio = rows["amount"] / rows["customer_id"].map(usual_amount)
    assert 0.8 < ratio.median() < 3.0

    def km_from_home(rows: pd.DataFrame) -> np.ndarray:
        shops = rows[rows["channel"] == "pos"]
        return haversine_km(
            shops["customer_lat"],
            shops["customer_lon"],
            shops["terminal_lat"],
            shops["terminal_lon"],
        )

    assert np.median(km_from_home(rows)) < 2 * np.median(km_from_home(genuine))
    assert (rows["country"] == "FR").mean() > 0.8
    # The same card's genuine online share, roughly.
    assert abs((rows["channel"] == "ecom").mean() - (genuine["channel"] == "ecom").mean()) < 0.1


def test_atm_cashout_only_when_asked_and_then_rapid_withdrawals_abroad_or_at_night() -> None:
    bank = Bank.build(3000, 4)
    engine = Engine(bank, 4, ["atm_cashout"])
    days = [engine.day(20454 * 86400 + d * 86400) for d in range(10)]
    code = 1 + SCENARIO_NAMES.index("atm_cashout")
    scenario = np.concatenate([d.scenario for d in days])
    assert set(np.unique(scenario)) == {0, code}
    fraud = np.concatenate([d.scenario == code for d in days])
    terminal = np.concatenate([d.terminal for d in days])[fraud]
    amount = np.concatenate([d.amount for d in days])[fraud]
    hour = (np.concatenate([d.time for d in days])[fraud] % 86400) // 3600
    assert (bank.terminal_channel[terminal] == 2).all()
    assert (amount % 20 == 0).all() and (amount >= 200).all()
    abroad = bank.terminal_city[terminal] >= 8
    assert (abroad | (hour < 8)).all()
    assert abroad.mean() > 0.5


def test_fraud_victims_do_not_depend_on_gender_or_age(history: pd.DataFrame) -> None:
    """Per-customer victimisation by group: every group within 4 standard errors of the rest."""
    per_customer = history.groupby("customer_id").agg(
        victim=("is_fraud", "max"), gender=("gender", "first"), birth_year=("birth_year", "first")
    )
    age = 2026 - per_customer["birth_year"]
    groups = {
        "F": per_customer["gender"] == "F",
        "M": per_customer["gender"] == "M",
        "under 35": age < 35,
        "35-54": (age >= 35) & (age < 55),
        "55+": age >= 55,
    }
    for name, members in groups.items():
        inside, outside = per_customer["victim"][members], per_customer["victim"][~members]
        pooled = per_customer["victim"].mean()
        se = np.sqrt(pooled * (1 - pooled) * (1 / len(inside) + 1 / len(outside)))
        z = (inside.mean() - outside.mean()) / se
        assert abs(z) < 4, (name, inside.mean(), outside.mean(), z)


def test_genuine_behaviour_differs_by_age(genuine: pd.DataFrame) -> None:
    age = 2026 - genuine["birth_year"]
    young, old = genuine[age < 30], genuine[age >= 60]
    assert (young["channel"] == "ecom").mean() > 1.8 * (old["channel"] == "ecom").mean()
    assert (old["channel"] == "atm").mean() > 1.5 * (young["channel"] == "atm").mean()
    assert old["amount"].median() > 1.2 * young["amount"].median()

    def share(rows: pd.DataFrame, channel: str, mcc: str) -> float:
        in_channel = rows[rows["channel"] == channel]
        return float((in_channel["merchant_category"] == mcc).mean())

    assert share(young, "pos", "5814") > 1.5 * share(old, "pos", "5814")  # fast food
    assert share(old, "pos", "5912") > 1.5 * share(young, "pos", "5912")  # pharmacy
    assert share(young, "ecom", "5815") > 1.3 * share(old, "ecom", "5815")  # digital goods
