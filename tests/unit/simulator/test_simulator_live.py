"""Live traffic and malformed events, without Kafka."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import numpy as np
import orjson
import pandas as pd
import pytest

from fraud.errors import ValidationError
from schemas import validator
from simulator.bank import Bank
from simulator.defaults import DEFAULT_DAYS, DEFAULT_START, LIVE_START
from simulator.engine import Engine
from simulator.live import LiveTraffic
from simulator.malformed import MALFORMED_KINDS, card_number, malform
from simulator.scenarios import DEFAULT_SCENARIOS
from stream.edge import luhn_check_digit, luhn_valid

NOW = 1_790_000_000.0  # 2026-09-21T...Z: the caller's wall clock, unrelated to simulated time


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


def times(events: list[dict]) -> np.ndarray:
    """Event timestamps as epoch seconds."""
    stamps = pd.to_datetime([e["timestamp"] for e in events], utc=True, format="ISO8601")
    return (stamps - pd.Timestamp(0, tz="UTC")).total_seconds().to_numpy()


def test_events_carry_simulated_time_from_the_day_after_the_default_history(bank: Bank) -> None:
    assert LIVE_START == DEFAULT_START + dt.timedelta(days=DEFAULT_DAYS) == dt.date(2026, 3, 2)
    traffic = LiveTraffic(bank, seed=3)
    assert traffic.simulated_time == dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    events = []
    for step in range(4):
        events += traffic.next_batch(2500, NOW + step)[0]
    stamps = times(events)
    start = dt.datetime(2026, 3, 2, tzinfo=dt.UTC).timestamp()
    assert start <= stamps[0] < start + 3600
    assert np.all(np.diff(stamps) >= 0)  # handed out in time order
    # 10,000 events of a 1,000-customer bank (~2,200 a day) span days, not the four
    # wall-clock seconds of the calls.
    assert 3.5 < (stamps[-1] - stamps[0]) / 86_400 < 5.5
    assert traffic.simulated_time.timestamp() == stamps[-1]
    assert events[0]["timestamp"].endswith("Z")
    # The caller's clock changes nothing but the run id in transaction ids.
    other = LiveTraffic(bank, seed=3).next_batch(10_000, dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    assert [e["timestamp"] for e in other[0]] == [e["timestamp"] for e in events]
    assert LiveTraffic(bank, seed=3).next_batch(5)[0][0]["timestamp"] == events[0]["timestamp"]


def test_the_clock_starts_at_start_and_a_later_start_continues_the_same_days(bank: Bank) -> None:
    def without_ids(events: list[dict]) -> list[dict]:
        return [{k: v for k, v in e.items() if k != "transaction_id"} for e in events]

    from_midnight, _ = LiveTraffic(bank, seed=3).next_batch(3000, NOW)
    noon = dt.datetime(2026, 3, 2, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    from_noon, _ = LiveTraffic(bank, seed=3, start=noon).next_batch(1000, NOW)
    assert times(from_noon)[0] >= noon.timestamp()
    later = [e for e in from_midnight if times([e])[0] >= noon.timestamp()]
    assert without_ids(from_noon) == without_ids(later[:1000])

    from_date, _ = LiveTraffic(bank, seed=3, start=dt.date(2026, 6, 1)).next_batch(50, NOW)
    assert from_date[0]["timestamp"].startswith("2026-06-01T")
    with pytest.raises(ValueError, match="timezone-aware"):
        LiveTraffic(bank, seed=3, start=dt.datetime(2026, 3, 2, 12))


def test_a_cards_gaps_between_transactions_look_like_the_historys(bank: Bank) -> None:
    """Measured on this bank (10 days each): median gap 5.3 h in history, 5.7 h live; 15% of
    gaps under an hour in both. Stamped with the wall clock at 300 events/s, every gap was."""

    def gaps(cards: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        order = np.lexsort((seconds, cards))
        same_card = cards[order][1:] == cards[order][:-1]
        return np.diff(seconds[order])[same_card]

    engine = Engine(bank, seed=3, scenarios=DEFAULT_SCENARIOS)
    first_day = int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp())
    history = [engine.day(first_day + day * 86_400) for day in range(10)]
    history_gaps = gaps(
        np.concatenate([rows.card for rows in history]),
        np.concatenate([rows.time for rows in history]).astype(float),
    )
    events, _ = LiveTraffic(bank, seed=3).next_batch(sum(map(len, history)), NOW)
    live_gaps = gaps(np.array([e["card_id"] for e in events]), times(events))

    ratio = np.median(live_gaps) / np.median(history_gaps)
    assert 0.8 < ratio < 1.25, (np.median(live_gaps), np.median(history_gaps))
    under_an_hour = np.mean(live_gaps < 3600), np.mean(history_gaps < 3600)
    assert abs(under_an_hour[0] - under_an_hour[1]) < 0.03, under_an_hour


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
            assert info.value.field == "card_id" and info.value.rule == "pattern"
            assert key == payload["card_id"] and luhn_valid(key) and len(key) == 16
    with pytest.raises(ValueError, match="unknown malformed kind"):
        malform(events[0], "gibberish", rng)
