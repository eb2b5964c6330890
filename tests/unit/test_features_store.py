"""Store behaviour: idempotency, in-batch order, labels and their delay, protected attributes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from fraud.errors import ValidationError
from stream.feature_store import InMemoryFeatureStore
from stream.features import FEATURE_NAMES, PROTECTED_ATTRIBUTES
from tests.unit.test_features import T0, iso, tx


def label(number: int, at: timedelta, verdict: str = "fraud") -> dict[str, Any]:
    return {
        "transaction_id": f"tx{number}",
        "label": verdict,
        "labelled_at": iso(T0 + at),
        "analyst_id": "a1",
        "source": "analyst",
    }


def test_an_event_processed_again_returns_the_same_features_and_counts_once() -> None:
    store = InMemoryFeatureStore()
    first = store.process_batch([tx(1, timedelta(0)), tx(2, timedelta(minutes=1))])
    again = store.process_batch([tx(2, timedelta(minutes=1)), tx(3, timedelta(minutes=2))])
    assert again[0] == first[1]
    assert again[1]["card_count_1h"] == 2.0
    assert again[1]["terminal_count_1d"] == 2.0


def test_a_duplicate_inside_one_batch_is_counted_once() -> None:
    store = InMemoryFeatureStore()
    a, b, c = store.process_batch(
        [tx(1, timedelta(0)), tx(1, timedelta(0)), tx(2, timedelta(minutes=1))]
    )
    assert a == b
    assert c["card_count_1h"] == 1.0
    assert c["terminal_count_1d"] == 1.0


def test_a_replayed_batch_keeps_its_features_even_after_new_labels() -> None:
    store = InMemoryFeatureStore()
    store.process_batch([tx(1, timedelta(0))])
    batch = [tx(2, timedelta(hours=2)), tx(3, timedelta(hours=3))]
    first = store.process_batch(batch)
    assert store.apply_labels([label(1, timedelta(hours=1))]) == 1
    assert store.process_batch(batch) == first
    assert first[0]["terminal_fraud_rate_1d"] == 0.0  # computed before the label arrived


def test_events_of_one_card_in_one_batch_see_each_other_in_time_order() -> None:
    events = [tx(n, timedelta(minutes=10 * n), amount=float(n)) for n in range(1, 5)]
    one_by_one = [InMemoryFeatureStore()]
    singles = [one_by_one[0].process_batch([event])[0] for event in events]
    assert InMemoryFeatureStore().process_batch(events) == singles
    shuffled = [events[2], events[0], events[3], events[1]]
    by_time = InMemoryFeatureStore().process_batch(shuffled)
    assert by_time == [singles[2], singles[0], singles[3], singles[1]]
    assert singles[3]["card_amount_sum_1h"] == 6.0


def test_a_late_event_sees_only_earlier_events_and_later_ones_see_it() -> None:
    store = InMemoryFeatureStore()
    store.process_batch([tx(1, timedelta(hours=2), amount=5.0)])
    (late,) = store.process_batch([tx(2, timedelta(hours=1), amount=7.0)])
    (after,) = store.process_batch([tx(3, timedelta(hours=3))])
    assert late["card_count_24h"] == 0.0
    assert late["terminal_count_1d"] == 0.0
    assert after["card_amount_sum_24h"] == 12.0
    assert after["seconds_since_prev_tx"] == 3600.0
    assert after["terminal_count_1d"] == 2.0


def test_terminal_counts_span_cards_and_windows() -> None:
    store = InMemoryFeatureStore()
    store.process_batch(
        [
            tx(1, timedelta(days=-27), card_id="card_B"),
            tx(2, timedelta(days=-6), card_id="card_C"),
            tx(3, timedelta(hours=-2), card_id="card_D", terminal_id="term_2"),
            tx(4, timedelta(hours=-1), card_id="card_E"),
        ]
    )
    (now,) = store.process_batch([tx(5, timedelta(0))])
    assert (now["terminal_count_1d"], now["terminal_count_7d"], now["terminal_count_28d"]) == (
        1.0,
        2.0,
        3.0,
    )
    assert now["card_count_30d"] == 0.0


def test_fraud_rate_uses_only_labels_known_at_scoring_time() -> None:
    store = InMemoryFeatureStore()
    store.process_batch(
        [tx(1, timedelta(0), card_id="card_B"), tx(2, timedelta(minutes=5), card_id="card_C")]
    )
    assert (
        store.apply_labels([label(1, timedelta(hours=2)), label(2, timedelta(hours=2), "legit")])
        == 2
    )
    before, at, after = store.process_batch(
        [
            tx(3, timedelta(hours=1)),
            tx(4, timedelta(hours=2)),  # labelled_at <= t: known
            tx(5, timedelta(days=1, minutes=1)),  # tx1 left the 1 d window
        ]
    )
    assert before["terminal_fraud_rate_1d"] == 0.0
    assert at["terminal_fraud_rate_1d"] == pytest.approx(1 / 3)  # tx1 fraud among tx1-tx3
    assert at["terminal_fraud_rate_28d"] == pytest.approx(1 / 3)
    assert after["terminal_count_1d"] == 3.0  # tx2, tx3, tx4
    assert after["terminal_fraud_rate_1d"] == 0.0
    assert after["terminal_fraud_rate_7d"] == pytest.approx(1 / 4)


def test_latest_label_wins_and_unknown_transactions_are_ignored() -> None:
    store = InMemoryFeatureStore()
    store.process_batch([tx(1, timedelta(0), card_id="card_B")])
    assert store.apply_labels([label(1, timedelta(minutes=10))]) == 1
    assert store.apply_labels([label(1, timedelta(minutes=5), "legit")]) == 0  # older: ignored
    assert store.apply_labels([label(1, timedelta(minutes=10))]) == 1  # same label again
    assert store.apply_labels([label(99, timedelta(minutes=10))]) == 0
    (fraud_known,) = store.process_batch([tx(2, timedelta(minutes=20))])
    assert fraud_known["terminal_fraud_rate_1d"] == 1.0
    assert store.apply_labels([label(1, timedelta(minutes=30), "legit")]) == 1
    (relabelled,) = store.process_batch([tx(3, timedelta(minutes=40))])
    assert relabelled["terminal_fraud_rate_1d"] == 0.0
    # in one call the latest labelled_at wins regardless of order
    assert (
        store.apply_labels([label(1, timedelta(hours=2)), label(1, timedelta(hours=1), "legit")])
        == 1
    )
    (refraud,) = store.process_batch([tx(4, timedelta(hours=3))])
    assert refraud["terminal_fraud_rate_1d"] == pytest.approx(1 / 3)


def test_bad_labels_are_rejected() -> None:
    store = InMemoryFeatureStore()
    with pytest.raises(ValidationError, match="maybe"):
        store.apply_labels([label(1, timedelta(0), "maybe")])
    with pytest.raises(ValidationError, match="labelled_at"):
        store.apply_labels([{"transaction_id": "tx1", "label": "fraud"}])
    assert store.apply_labels([]) == 0
    assert store.process_batch([]) == []


def test_protected_attributes_are_never_features() -> None:
    assert set(PROTECTED_ATTRIBUTES) >= {"birth_year", "age", "gender"}
    tokens = {token for name in FEATURE_NAMES for token in name.split("_")}
    for attribute in PROTECTED_ATTRIBUTES:
        assert attribute not in FEATURE_NAMES
        assert not set(attribute.split("_")) <= tokens, attribute


def test_customer_table_columns_cannot_leak_into_features() -> None:
    plain = [tx(1, timedelta(0)), tx(2, timedelta(minutes=3), amount=99.0)]
    customer = {"birth_year": 1950, "age": 74, "gender": "F", "customer_segment": "x"}
    enriched = [{**event, **customer} for event in plain]
    younger = [{**event, "birth_year": 2001, "age": 23, "gender": "M"} for event in plain]
    expected = InMemoryFeatureStore().process_batch(plain)
    assert InMemoryFeatureStore().process_batch(enriched) == expected
    assert InMemoryFeatureStore().process_batch(younger) == expected
    assert set(expected[0]) == set(FEATURE_NAMES)


def test_transaction_records_expire_with_the_state() -> None:
    store = InMemoryFeatureStore()
    store.process_batch([tx(1, timedelta(0)), tx(2, timedelta(days=20))])
    store.process_batch([tx(3, timedelta(days=32), card_id="card_B")])
    assert store.apply_labels([label(1, timedelta(days=32))]) == 0  # older than the TTL
    assert store.apply_labels([label(2, timedelta(days=32))]) == 1
