"""Card habit features (how usual an event is for its own card), numbers worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stream.features import CARD_HABIT_FEATURES, FEATURE_NAMES, InMemoryFeatureStore

T0 = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)  # a Monday, noon UTC
DAY = timedelta(days=1)


def tx(number: int, at: timedelta, **fields: Any) -> dict[str, Any]:
    """A grocery purchase in a shop `at` after T0; fields override or add (None removes)."""
    event: dict[str, Any] = {
        "transaction_id": f"tx{number}",
        "timestamp": (T0 + at).isoformat(),
        "card_id": "card_A",
        "terminal_id": "shop_1",
        "merchant_category": "5411",  # grocery
        "channel": "pos",
        "amount": 10.0,
    }
    event.update(fields)
    return {key: value for key, value in event.items() if value is not None}


def last_features(*events: dict[str, Any]) -> dict[str, float | None]:
    """The features of the last event, after the others went through a fresh store in order."""
    store = InMemoryFeatureStore()
    for event in events[:-1]:
        store.process_batch([event])
    return store.process_batch([events[-1]])[0]


def test_habit_features_sit_between_the_card_and_terminal_features() -> None:
    assert len(CARD_HABIT_FEATURES) == 14
    start = FEATURE_NAMES.index(CARD_HABIT_FEATURES[0])
    assert FEATURE_NAMES[start : start + len(CARD_HABIT_FEATURES)] == CARD_HABIT_FEATURES
    assert FEATURE_NAMES[start - 1] == "card_new_device_30d"


def test_amount_rank_category_hour_and_channel_against_the_card_lookback() -> None:
    features = last_features(
        tx(1, timedelta(0), amount=10.0),  # grocery, pos, 12:00
        tx(2, timedelta(hours=1), amount=30.0, merchant_category="5812"),  # restaurant, 13:00
        tx(3, timedelta(hours=2), amount=20.0, channel="ecom"),  # grocery online, 14:00
        tx(4, timedelta(hours=3), amount=20.0),  # grocery, pos, 15:00
    )
    # Amounts before: 10 (below), 20 (a tie counts half), 30 (above).
    assert features["card_amount_percentile_30d"] == pytest.approx(1.5 / 3)
    # Grocery before: 10 and 20, mean 15.
    assert features["amount_to_card_category_mean_30d"] == pytest.approx(20.0 / 15.0)
    assert features["card_category_share_30d"] == pytest.approx(2 / 3)
    assert features["card_hour_share_30d"] == pytest.approx(1 / 3)  # only 14:00 is within 1 h
    assert features["card_channel_share_30d"] == pytest.approx(2 / 3)


def test_hours_of_day_wrap_around_midnight() -> None:
    late = timedelta(hours=11, minutes=30)  # 23:30
    features = last_features(
        tx(1, late),
        tx(2, late + timedelta(minutes=40)),  # 00:10 the next day
        tx(3, late + DAY),  # 23:30 again
    )
    assert features["card_hour_share_30d"] == 1.0


def test_first_event_of_a_card_has_no_habits_yet() -> None:
    (features,) = InMemoryFeatureStore().process_batch([tx(1, timedelta(0), device_id="d1")])
    for name in CARD_HABIT_FEATURES:
        expected = 0.0 if name.startswith("card_new_") or name.endswith("_uses_30d") else None
        assert features[name] == expected, name


def test_the_last_day_and_four_days_against_the_cards_typical_day() -> None:
    # Baseline: one purchase of 10 a day at noon on days 0-13, so the oldest is 18 days
    # before the scored event (day 18, noon) and the baseline spans 18 - 4 = 14 days: a typical
    # day of 1 purchase and 10 spent.
    baseline = [tx(day, day * DAY) for day in range(14)]
    recent = [
        tx(15, 15 * DAY),  # 3 days before
        tx(17, 17 * DAY),  # exactly 24 h before: inside the last day
        tx(18, 18 * DAY - timedelta(hours=6), amount=40.0),
    ]
    features = last_features(*baseline, *recent, tx(99, 18 * DAY))
    assert features["card_typical_daily_count"] == pytest.approx(1.0)
    assert features["card_count_24h_to_typical_day"] == pytest.approx(2.0)
    assert features["card_count_4d_to_typical"] == pytest.approx(3 / 4)
    assert features["card_amount_4d_to_typical"] == pytest.approx(60.0 / 40.0)


def test_a_baseline_shorter_than_a_week_gives_no_typical_day() -> None:
    events = [tx(day, day * DAY) for day in range(10)]  # oldest 10 days back: 6 days of baseline
    features = last_features(*events, tx(99, 10 * DAY))
    for name in (
        "card_typical_daily_count",
        "card_count_24h_to_typical_day",
        "card_count_4d_to_typical",
        "card_amount_4d_to_typical",
    ):
        assert features[name] is None, name
    longer = last_features(*events, tx(99, 11 * DAY))  # 11 days back: 7 days of baseline
    assert longer["card_typical_daily_count"] == pytest.approx(7 / 7)


def test_terminal_and_device_familiarity() -> None:
    features = last_features(
        tx(1, timedelta(0), terminal_id="site_A", channel="ecom", device_id="d1"),
        tx(2, DAY, terminal_id="shop_B"),
        tx(3, 2 * DAY, terminal_id="site_A", channel="ecom", device_id="d1"),
        tx(4, 3 * DAY, terminal_id="site_A", channel="ecom", device_id="d1"),
    )
    assert features["card_terminal_uses_30d"] == 2.0
    assert features["seconds_since_card_used_terminal"] == 86_400.0
    assert features["seconds_since_card_first_used_device"] == 3 * 86_400.0
    unknown = last_features(
        tx(1, timedelta(0), device_id="d1"), tx(2, DAY, terminal_id="shop_B", device_id="d2")
    )
    assert unknown["card_terminal_uses_30d"] == 0.0
    assert unknown["seconds_since_card_used_terminal"] is None
    assert unknown["seconds_since_card_first_used_device"] is None  # a device new to the card
    no_device = last_features(tx(1, timedelta(0), device_id="d1"), tx(2, DAY))
    assert no_device["seconds_since_card_first_used_device"] is None


def test_terminals_and_devices_first_used_in_the_last_four_days() -> None:
    events = [
        tx(1, timedelta(0), terminal_id="shop_A", device_id="d1"),
        tx(2, DAY, terminal_id="shop_B"),
        # The last 4 days before day 10: a known terminal and device, two new terminals
        # (one used twice) and one new device (used twice).
        tx(3, 7 * DAY, terminal_id="shop_B", device_id="d1"),
        tx(4, 8 * DAY, terminal_id="shop_C", device_id="d9"),
        tx(5, 8 * DAY + timedelta(hours=1), terminal_id="shop_C"),
        tx(6, 9 * DAY, terminal_id="shop_D", device_id="d9"),
        tx(7, 10 * DAY, terminal_id="shop_A"),
    ]
    features = last_features(*events)
    assert features["card_new_terminals_4d"] == 2.0
    assert features["card_new_devices_4d"] == 1.0


def test_first_uses_are_counted_among_the_latest_64_events_only() -> None:
    events = [tx(i, timedelta(minutes=i), terminal_id=f"shop_{i}") for i in range(70)]
    features = last_features(*events, tx(99, timedelta(hours=2), terminal_id="shop_9"))
    assert features["card_new_terminals_4d"] == 64.0
    assert features["card_terminal_uses_30d"] == 1.0
    assert features["card_amount_percentile_30d"] == 0.5  # 70 equal amounts
