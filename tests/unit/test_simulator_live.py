"""Live traffic and malformed events, without Kafka."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import numpy as np
import orjson
import pytest

from fraud.errors import ValidationError
from schemas import validator
from simulator.bank import Bank
from simulator.live import LiveTraffic, iso_timestamp
from simulator.malformed import (
    MALFORMED_KINDS,
    card_number,
    luhn_check_digit,
    luhn_valid,
    malform,
)

NOW = 1_790_000_000.0  # 2026-09-21T...Z


@pytest.fixture(scope="module")
def bank() -> Bank:
    return Bank.build(1000, 3)


def test_batches_validate_and_truth_lines_up(bank: Bank) -> None:
    traffic = LiveTraffic(bank, seed=3, run_id="r1")
    validate = validator("transaction")
    events, truth = [], []
    for step in range(6):
        batch, labels = traffic.next_batch(1500, NOW + step)
        assert len(batch) == len(labels) == 1500
        assert {e["timestamp"] for e in batch} == {iso_timestamp(NOW + step)}
        events += batch
        truth += labels
    for event in events:
        validate(event)
    ids = [e["transaction_id"] for e in events]
    assert len(set(ids)) == len(ids) and ids[0] == "tx-r1-000000000"
    assert [t["transaction_id"] for t in truth] == ids
    assert all(set(t) == {"transaction_id", "is_fraud", "fraud_scenario"} for t in truth)
    assert all((t["fraud_scenario"] is None) == (t["is_fraud"] == 0) for t in truth)
    fraud_rate = np.mean([t["is_fraud"] for t in truth])
    assert 0.002 < fraud_rate < 0.012
    assert {e["card_id"] for e in events} <= set(bank.card_ids.to_pylist())


def test_live_cards_belong_to_the_same_customers_as_in_history(bank: Bank) -> None:
    events, _ = LiveTraffic(bank, seed=3).next_batch(3000, NOW)
    card_ids = bank.card_ids.to_pylist()
    customer_ids = bank.customer_ids.to_pylist()
    for event in events:
        card = card_ids.index(event["card_id"])
        assert customer_ids[bank.card_customer[card]] == event["customer_id"]
    assert Bank.build(1000, 3).card_ids.equals(bank.card_ids)


def test_same_seed_and_calls_give_the_same_traffic(bank: Bank) -> None:
    first = LiveTraffic(bank, seed=3).next_batch(500, NOW)
    second = LiveTraffic(bank, seed=3).next_batch(500, NOW)
    assert first == second
    third = LiveTraffic(bank, seed=4).next_batch(500, NOW)
    assert [e["card_id"] for e in third[0]] != [e["card_id"] for e in first[0]]


def test_timestamps_are_the_callers_wall_clock(bank: Bank) -> None:
    moment = dt.datetime(2026, 5, 4, 3, 2, 1, 987_654, tzinfo=dt.UTC)
    events, _ = LiveTraffic(bank, seed=3).next_batch(3, moment)
    assert {e["timestamp"] for e in events} == {"2026-05-04T03:02:01.987Z"}


def test_injected_scenario_starts_at_the_asked_moment() -> None:
    bank = Bank.build(5000, 8)
    traffic = LiveTraffic(bank, seed=8, scenario="atm_cashout", scenario_at=10.0)
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    for step in range(30):  # 30 s of wall-clock at 1,500 events/s: about 4 simulated days
        _, truth = traffic.next_batch(1500, NOW + step)
        target = before if step < 10 else after
        target.update(t["fraud_scenario"] for t in truth if t["is_fraud"])
        assert traffic.scenario_active == (step >= 10)
    assert before["atm_cashout"] == 0
    assert after["atm_cashout"] >= 5
    assert before["card_testing"] > 0 and after["card_testing"] > 0


def test_bad_live_arguments_are_refused(bank: Bank) -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        LiveTraffic(bank, 1, scenario="teleport")
    with pytest.raises(ValueError, match="already part"):
        LiveTraffic(bank, 1, scenario="mimicry")
    with pytest.raises(ValueError, match="needs a scenario"):
        LiveTraffic(bank, 1, scenario_at=3.0)


def test_luhn() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112")
    assert luhn_check_digit("7992739871") == "3"
    rng = np.random.default_rng(0)
    numbers = [card_number(rng) for _ in range(200)]
    assert all(len(n) == 16 and luhn_valid(n) for n in numbers)


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_malformed_events_break_the_contract_the_way_their_kind_says(bank: Bank, kind: str) -> None:
    validate = validator("transaction")
    events, _ = LiveTraffic(bank, seed=3).next_batch(50, NOW)
    rng = np.random.default_rng(1)
    for event in events:
        key, value = malform(event, kind, rng)
        if kind == "invalid_json":
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(value)
            assert key == event["card_id"]
            continue
        payload = orjson.loads(value)
        with pytest.raises(ValidationError) as info:
            validate(payload)
        if kind == "missing_field":
            assert info.value.rule == "required" and info.value.field not in payload
        elif kind == "bad_value":
            assert info.value.field != "card_id" and info.value.rule != "required"
        else:
            assert info.value.field == "card_id" and info.value.rule == "not"
            assert key == payload["card_id"] and luhn_valid(key) and len(key) == 16
    with pytest.raises(ValueError, match="unknown malformed kind"):
        malform(events[0], "gibberish", rng)
