"""Feature math on hand-made sequences, with the numbers worked out by hand."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from fraud.errors import ValidationError
from stream.features import (
    CARD_EVENT_DTYPE,
    CATEGORICAL_FEATURES,
    EARTH_RADIUS_KM,
    FEATURE_NAMES,
    MAX_CARD_HISTORY,
    TERMINAL_FEATURES,
    UNKNOWN_CODE,
    InMemoryFeatureStore,
    channel_code,
    default_features,
    merchant_category_group_code,
    merged_card_rows,
    timestamp_us,
)

T0 = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)  # a Monday
KM_PER_DEGREE = EARTH_RADIUS_KM * math.radians(1.0)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def tx(number: int, at: timedelta, **fields: Any) -> dict[str, Any]:
    """A minimal valid transaction `at` after T0; fields override or add (None removes)."""
    event: dict[str, Any] = {
        "transaction_id": f"tx{number}",
        "timestamp": iso(T0 + at),
        "card_id": "card_A",
        "customer_id": "cust_A",
        "terminal_id": "term_1",
        "merchant_category": "5411",
        "channel": "pos",
        "amount": 10.0,
        "currency": "EUR",
    }
    event.update(fields)
    return {key: value for key, value in event.items() if value is not None}


def run(*events: dict[str, Any]) -> list[dict[str, float | None]]:
    """Each event in its own batch, in order, through a fresh store."""
    store = InMemoryFeatureStore()
    return [store.process_batch([event])[0] for event in events]


def test_card_windows_include_the_lower_edge_and_exclude_the_event_itself() -> None:
    features = run(
        tx(1, timedelta(0), amount=10.0),
        tx(2, timedelta(minutes=30), amount=30.0),
        tx(3, timedelta(hours=1), amount=20.0),  # tx1 is exactly 1 h old: inside
        tx(4, timedelta(hours=1, microseconds=1), amount=5.0),  # tx1 is 1 h + 1 us old: outside
    )
    third, fourth = features[2], features[3]
    assert third["card_count_1h"] == 2.0
    assert third["card_amount_sum_1h"] == 40.0
    assert third["card_amount_mean_1h"] == 20.0
    assert third["card_amount_max_1h"] == 30.0
    assert third["amount_to_card_mean_30d"] == 1.0  # 20 / mean(10, 30)
    assert third["seconds_since_prev_tx"] == 1800.0
    assert fourth["card_count_1h"] == 2.0  # tx2, tx3
    assert fourth["card_amount_sum_1h"] == 50.0
    assert fourth["card_count_24h"] == 3.0
    assert fourth["card_amount_sum_24h"] == 60.0
    assert fourth["card_amount_max_24h"] == 30.0
    assert fourth["amount_to_card_mean_30d"] == pytest.approx(5.0 / 20.0)
    assert fourth["seconds_since_prev_tx"] == pytest.approx(1e-6)


def test_first_transaction_has_empty_history() -> None:
    (first,) = run(tx(1, timedelta(0)))
    for window in ("1h", "24h", "7d", "30d"):
        assert first[f"card_count_{window}"] == 0.0
        assert first[f"card_amount_sum_{window}"] == 0.0
        assert first[f"card_amount_mean_{window}"] is None
        assert first[f"card_amount_max_{window}"] is None
    assert first["amount_to_card_mean_30d"] is None
    assert first["seconds_since_prev_tx"] is None
    assert first["card_new_terminal_30d"] == 1.0
    for window in ("1d", "7d", "28d"):
        assert first[f"terminal_count_{window}"] == 0.0
        assert first[f"terminal_count_{window}_after_delay"] == 0.0
        assert first[f"terminal_fraud_rate_{window}_after_delay"] is None


def test_thirty_day_lookback_edges() -> None:
    features = run(
        tx(1, timedelta(0), amount=100.0),
        tx(2, timedelta(days=30), amount=1.0),  # tx1 exactly 30 d old: inside
        tx(3, timedelta(days=60, microseconds=1), amount=1.0),  # tx2 30 d + 1 us old
    )
    assert features[1]["card_count_30d"] == 1.0
    assert features[1]["card_count_7d"] == 0.0
    assert features[1]["seconds_since_prev_tx"] == 30 * 86_400.0
    assert features[1]["card_new_terminal_30d"] == 0.0
    assert features[2]["card_count_30d"] == 0.0
    assert features[2]["seconds_since_prev_tx"] is None  # nothing within the lookback
    assert features[2]["card_new_terminal_30d"] == 1.0


def test_events_at_the_same_time_do_not_see_each_other() -> None:
    store = InMemoryFeatureStore()
    batch = [tx(1, timedelta(0)), tx(2, timedelta(0)), tx(3, timedelta(seconds=1))]
    first, second, third = store.process_batch(batch)
    assert first["card_count_1h"] == second["card_count_1h"] == 0.0
    assert third["card_count_1h"] == 2.0


def test_distinct_terminals_countries_and_first_use_flags() -> None:
    features = run(
        tx(1, timedelta(0), terminal_id="t1", country="ES", device_id="d1"),
        tx(2, timedelta(hours=1), terminal_id="t2", country="FR", device_id="d1"),
        tx(3, timedelta(hours=2), terminal_id="t1", country="ES"),
        tx(4, timedelta(hours=25, minutes=30), terminal_id="t3", country="PT", device_id="d2"),
    )
    assert features[1]["card_new_terminal_30d"] == 1.0
    assert features[1]["card_new_country_30d"] == 1.0
    assert features[1]["card_new_device_30d"] == 0.0
    assert features[2]["card_distinct_terminals_24h"] == 2.0
    assert features[2]["card_distinct_countries_24h"] == 2.0
    assert features[2]["card_new_terminal_30d"] == 0.0
    assert features[2]["card_new_country_30d"] == 0.0
    assert features[2]["card_new_device_30d"] is None  # no device on this event
    # 25.5 h: tx1 and tx2 left the 24 h window, tx3 (t1, ES) is still in it
    assert features[3]["card_distinct_terminals_24h"] == 1.0
    assert features[3]["card_distinct_countries_24h"] == 1.0
    assert features[3]["card_new_device_30d"] == 1.0


def test_events_without_country_are_not_counted_as_a_country() -> None:
    features = run(tx(1, timedelta(0)), tx(2, timedelta(minutes=1), country="ES"))
    assert features[0]["card_new_country_30d"] is None
    assert features[1]["card_distinct_countries_24h"] == 0.0
    assert features[1]["card_new_country_30d"] == 1.0


def test_distance_and_speed_from_previous_transaction() -> None:
    here = {"terminal_lat": 0.0, "terminal_lon": 0.0}
    there = {"terminal_lat": 0.0, "terminal_lon": 1.0}
    features = run(
        tx(1, timedelta(0), **here),
        tx(2, timedelta(minutes=30), **there),
        tx(3, timedelta(minutes=40)),  # no coordinates
        tx(4, timedelta(minutes=50), **here),  # previous (tx3) has none
    )
    assert features[0]["distance_from_prev_tx_km"] is None
    assert features[1]["distance_from_prev_tx_km"] == pytest.approx(KM_PER_DEGREE)
    assert features[1]["speed_from_prev_tx_kmh"] == pytest.approx(2 * KM_PER_DEGREE)
    assert features[2]["distance_from_prev_tx_km"] is None
    assert features[2]["speed_from_prev_tx_kmh"] is None
    assert features[3]["distance_from_prev_tx_km"] is None
    assert features[3]["seconds_since_prev_tx"] == 600.0


def test_event_features_time_channel_category_and_customer_distance() -> None:
    saturday_night = timedelta(days=5, hours=-9, minutes=30)  # Sat 2024-03-09 03:30 UTC
    (night,) = run(
        tx(
            1,
            saturday_night,
            channel="atm",
            merchant_category="6011",
            customer_lat=0.0,
            customer_lon=0.0,
            terminal_lat=1.0,
            terminal_lon=0.0,
        )
    )
    assert (night["hour_of_day"], night["is_night"], night["is_weekend"]) == (3.0, 1.0, 1.0)
    assert night["channel_code"] == 3.0
    assert night["merchant_category_group_code"] == 22.0  # cash
    assert night["distance_customer_to_terminal_km"] == pytest.approx(KM_PER_DEGREE)
    (monday,) = run(tx(1, timedelta(0)))
    assert (monday["hour_of_day"], monday["is_night"], monday["is_weekend"]) == (12.0, 0.0, 0.0)
    assert monday["distance_customer_to_terminal_km"] is None


def test_missing_category_and_channel_get_the_reserved_code() -> None:
    (event,) = run(tx(1, timedelta(0), merchant_category=None, channel=None))
    assert event["channel_code"] == float(UNKNOWN_CODE)
    assert event["merchant_category_group_code"] == float(UNKNOWN_CODE)
    assert all(isinstance(value, float) or value is None for value in event.values())


@pytest.mark.parametrize(
    ("value", "code"),
    [("5411", 14), ("5999", 10), ("0742", 1), (742, 1), (6011.0, 22), ("7995", 24),
     ("541", 0), ("54a1", 0), (None, 0), (True, 0)],
)  # fmt: skip
def test_merchant_category_groups(value: Any, code: int) -> None:
    assert merchant_category_group_code(value) == code


def test_channel_codes_reserve_zero_for_unknown() -> None:
    assert [channel_code(v) for v in ("pos", "ecom", "atm", "moto", None)] == [1, 2, 3, 0, 0]


def test_timestamps_accept_z_offset_and_datetimes_and_reject_garbage() -> None:
    expected = timestamp_us("2024-03-04T12:00:00Z")
    assert timestamp_us("2024-03-04T12:00:00+00:00") == expected
    assert timestamp_us("2024-03-04T13:00:00+01:00") == expected
    assert timestamp_us(T0) == expected == 1_709_553_600_000_000
    with pytest.raises(ValidationError, match="ISO 8601"):
        timestamp_us("yesterday")


def test_bad_events_are_rejected_with_the_field_named() -> None:
    event = tx(1, timedelta(0))
    del event["terminal_id"]
    with pytest.raises(ValidationError, match="terminal_id"):
        InMemoryFeatureStore().process_batch([event])
    with pytest.raises(ValidationError, match="amount"):
        InMemoryFeatureStore().process_batch([tx(1, timedelta(0), amount=-5)])
    with pytest.raises(ValidationError, match="card number"):
        InMemoryFeatureStore().process_batch([tx(1, timedelta(0), card_id="4111111111111111")])


def test_card_history_is_capped() -> None:
    events = [tx(i, timedelta(seconds=i)) for i in range(MAX_CARD_HISTORY + 5)]
    store = InMemoryFeatureStore()
    for start in range(0, len(events), 250):
        store.process_batch(events[start : start + 250])
    (last,) = store.process_batch([tx(99_999, timedelta(hours=1))])
    assert last["card_count_30d"] == MAX_CARD_HISTORY
    assert last["card_count_1h"] == MAX_CARD_HISTORY  # all within the hour, but capped


def test_names_and_defaults() -> None:
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert set(CATEGORICAL_FEATURES) <= set(FEATURE_NAMES)
    # Label-derived terminal features only look at windows that end before the label delay.
    assert TERMINAL_FEATURES == (
        "terminal_count_1d",
        "terminal_count_7d",
        "terminal_count_28d",
        "terminal_count_1d_after_delay",
        "terminal_count_7d_after_delay",
        "terminal_count_28d_after_delay",
        "terminal_fraud_rate_1d_after_delay",
        "terminal_fraud_rate_7d_after_delay",
        "terminal_fraud_rate_28d_after_delay",
    )
    assert FEATURE_NAMES[-len(TERMINAL_FEATURES) :] == TERMINAL_FEATURES
    event = tx(1, timedelta(0), country="ES", device_id="d1", terminal_lat=1.0, terminal_lon=2.0)
    defaults = default_features(event)
    assert list(defaults) == list(FEATURE_NAMES)
    assert defaults == InMemoryFeatureStore().process_batch([event])[0]
    assert defaults["card_new_country_30d"] == 1.0
    assert np.isfinite(defaults["amount"] or np.nan)


@pytest.mark.parametrize("late", [False, True], ids=["in-order", "late-rows"])
def test_merged_card_rows_equal_one_sort_of_all_rows(late: bool) -> None:
    """The shortcut for in-order events (sort the new rows, lay each card's blocks side by
    side) gives exactly what sorting every row gives, and late rows take the full sort."""
    rng = np.random.default_rng(7 + late)
    for _trial in range(40):
        n_cards = int(rng.integers(1, 12))
        stored_sizes = rng.integers(0, 6, n_cards)
        new_sizes = rng.integers(0, 4, n_cards)
        stored = np.zeros(int(stored_sizes.sum()), dtype=CARD_EVENT_DTYPE)
        stored_group = np.repeat(np.arange(n_cards), stored_sizes)
        stored["ts"] = np.sort(rng.integers(0, 50, len(stored)))  # ties across and within cards
        stored["tx_key"] = rng.integers(0, 3, len(stored))
        order = np.lexsort((stored["tx_key"], stored["ts"], stored_group))
        stored = stored[order]  # each card's rows sorted
        if late and len(stored) > 1:
            stored[[0, -1]] = stored[[-1, 0]]  # a state with rows out of order
        new_group = rng.permutation(np.repeat(np.arange(n_cards), new_sizes))
        new = np.zeros(len(new_group), dtype=CARD_EVENT_DTYPE)
        new["ts"] = rng.integers(0 if late else 50, 80, len(new))
        new["tx_key"] = rng.integers(0, 3, len(new))
        new["amount"] = np.arange(len(new))  # tells rows with equal keys apart
        merged, group, where = merged_card_rows(stored, stored_group, new, new_group, n_cards)
        combined = np.concatenate((stored, new))
        all_groups = np.concatenate((stored_group, new_group))
        positions = np.concatenate((np.full(len(stored), -1), np.arange(len(new))))
        expected = np.lexsort((combined["tx_key"], combined["ts"], all_groups))
        assert merged.tobytes() == combined[expected].tobytes()
        assert group.tolist() == all_groups[expected].tolist()
        assert where.tolist() == positions[expected].tolist()
