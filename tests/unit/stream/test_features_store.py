"""Store behaviour: idempotency, in-batch order, labels and their delay, protected attributes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from fraud.errors import ConfigError, ValidationError
from fraud.settings import Settings
from stream.features import (
    DEFAULT_LABEL_DELAY,
    FEATURE_NAMES,
    PROTECTED_ATTRIBUTES,
    InMemoryFeatureStore,
    state_ttl,
)
from tests.unit.stream.test_features import T0, iso, tx


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
    store = InMemoryFeatureStore(label_delay=timedelta(hours=1))
    store.process_batch([tx(1, timedelta(0))])
    batch = [tx(2, timedelta(hours=2)), tx(3, timedelta(hours=3))]
    first = store.process_batch(batch)
    assert store.apply_labels([label(1, timedelta(hours=1))]) == 1
    assert store.process_batch(batch) == first
    assert first[0]["terminal_count_1d_after_delay"] == 1.0  # tx1
    assert first[0]["terminal_fraud_rate_1d_after_delay"] == 0.0  # computed before the label
    (fresh,) = store.process_batch([tx(4, timedelta(hours=4))])
    assert fresh["terminal_fraud_rate_1d_after_delay"] == pytest.approx(1 / 2)  # tx1 of tx1, tx2


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
    store = InMemoryFeatureStore(label_delay=timedelta(hours=1))
    store.process_batch(
        [tx(1, timedelta(0), card_id="card_B"), tx(2, timedelta(minutes=5), card_id="card_C")]
    )
    assert (
        store.apply_labels([label(1, timedelta(hours=2)), label(2, timedelta(hours=2), "legit")])
        == 2
    )
    before, at, after = store.process_batch(
        [
            tx(3, timedelta(hours=1, minutes=30)),  # windows end at 0:30: tx1, tx2
            tx(4, timedelta(hours=2)),  # labelled_at <= t: known
            tx(5, timedelta(days=1, hours=1, minutes=1)),  # 1 d window after delay: tx2-tx4
        ]
    )
    assert before["terminal_count_1d_after_delay"] == 2.0
    assert before["terminal_fraud_rate_1d_after_delay"] == 0.0
    assert at["terminal_count_1d_after_delay"] == 2.0  # tx3 is inside the delay
    assert at["terminal_fraud_rate_1d_after_delay"] == pytest.approx(1 / 2)
    assert at["terminal_fraud_rate_28d_after_delay"] == pytest.approx(1 / 2)
    assert at["terminal_count_1d"] == 3.0  # counts without delay: tx1-tx3
    assert after["terminal_count_1d"] == 2.0  # tx3, tx4
    assert after["terminal_count_1d_after_delay"] == 3.0  # tx2, tx3, tx4
    assert after["terminal_fraud_rate_1d_after_delay"] == 0.0
    assert after["terminal_fraud_rate_7d_after_delay"] == pytest.approx(1 / 4)


def test_after_delay_windows_are_half_open_and_end_at_the_delay() -> None:
    store = InMemoryFeatureStore()  # the default: 7 days
    assert store.label_delay == DEFAULT_LABEL_DELAY == timedelta(days=7)
    store.process_batch([tx(1, timedelta(0), card_id="card_B")])
    assert store.apply_labels([label(1, timedelta(hours=1))]) == 1
    inside, edge, after, oldest, gone = store.process_batch(
        [
            tx(2, timedelta(days=7)),  # tx1 is exactly the delay old: still inside it
            tx(3, timedelta(days=7, microseconds=1)),
            tx(4, timedelta(days=8)),  # tx1 exactly 1 d + delay old: inside the 1 d window
            tx(5, timedelta(days=35), card_id="card_C"),  # exactly 28 d + delay
            tx(6, timedelta(days=35, microseconds=1), card_id="card_D"),
        ]
    )
    assert inside["terminal_count_28d_after_delay"] == 0.0
    assert inside["terminal_fraud_rate_28d_after_delay"] is None
    assert inside["terminal_count_7d"] == 1.0
    for window in ("1d", "7d", "28d"):
        assert edge[f"terminal_count_{window}_after_delay"] == 1.0
        assert edge[f"terminal_fraud_rate_{window}_after_delay"] == 1.0
    assert after["terminal_fraud_rate_1d_after_delay"] == 1.0  # tx2, tx3 are inside the delay
    assert after["terminal_count_1d_after_delay"] == 1.0
    assert oldest["terminal_count_28d_after_delay"] == 4.0  # tx1-tx4
    assert oldest["terminal_fraud_rate_28d_after_delay"] == pytest.approx(1 / 4)
    assert gone["terminal_fraud_rate_28d_after_delay"] == 0.0  # tx1 left the window


def test_a_label_sooner_than_the_delay_changes_nothing_inside_the_delay() -> None:
    """Analysts label within hours; training knows a label only after the delay. The stream
    must give a transaction inside the delay the same features whether its label came or not."""
    events = [
        tx(1, timedelta(0), card_id="card_B"),
        tx(2, timedelta(hours=3), card_id="card_C"),
        tx(3, timedelta(days=1)),
        tx(4, timedelta(days=6, hours=23)),
        tx(5, timedelta(days=7, hours=4), card_id="card_D"),  # tx1, tx2 older than the delay
    ]
    labelled, unlabelled = InMemoryFeatureStore(), InMemoryFeatureStore()
    with_label, without_label = [], []
    for number, event in enumerate(events, start=1):
        with_label += labelled.process_batch([event])
        without_label += unlabelled.process_batch([event])
        if number == 2:
            assert labelled.apply_labels([label(1, timedelta(hours=2))]) == 1
    assert with_label[:4] == without_label[:4]
    assert with_label[1]["terminal_count_1d"] == 1.0  # the recent count sees tx1, unlabelled
    assert with_label[4]["terminal_count_7d_after_delay"] == 2.0  # tx1, tx2
    assert with_label[4]["terminal_fraud_rate_7d_after_delay"] == pytest.approx(1 / 2)
    assert without_label[4]["terminal_fraud_rate_7d_after_delay"] == 0.0


def test_the_label_delay_is_checked_and_sets_how_long_state_lives() -> None:
    assert DEFAULT_LABEL_DELAY == timedelta(days=Settings().label_delay_days)
    assert state_ttl() == state_ttl(timedelta(days=7)) == timedelta(days=36)  # 7 + 28 + 1
    assert state_ttl(timedelta(days=2)) == timedelta(days=31)  # the card lookback + 1 d
    assert state_ttl(timedelta(0)) == timedelta(days=31)
    with pytest.raises(ConfigError, match="label_delay"):
        InMemoryFeatureStore(label_delay=timedelta(hours=-1))
    with pytest.raises(ConfigError, match="label_delay"):
        InMemoryFeatureStore(label_delay=7)  # type: ignore[arg-type]


def test_latest_label_wins_and_unknown_transactions_are_ignored() -> None:
    # No delay: the after-delay windows end at t, so every label shows as soon as it is known.
    store = InMemoryFeatureStore(label_delay=timedelta(0))
    store.process_batch([tx(1, timedelta(0), card_id="card_B")])
    assert store.apply_labels([label(1, timedelta(minutes=10))]) == 1
    assert store.apply_labels([label(1, timedelta(minutes=5), "legit")]) == 0  # older: ignored
    assert store.apply_labels([label(1, timedelta(minutes=10))]) == 1  # same label again
    assert store.apply_labels([label(99, timedelta(minutes=10))]) == 0
    (fraud_known,) = store.process_batch([tx(2, timedelta(minutes=20))])
    assert fraud_known["terminal_fraud_rate_1d_after_delay"] == 1.0
    assert store.apply_labels([label(1, timedelta(minutes=30), "legit")]) == 1
    (relabelled,) = store.process_batch([tx(3, timedelta(minutes=40))])
    assert relabelled["terminal_fraud_rate_1d_after_delay"] == 0.0
    # in one call the latest labelled_at wins regardless of order
    assert (
        store.apply_labels([label(1, timedelta(hours=2)), label(1, timedelta(hours=1), "legit")])
        == 1
    )
    (refraud,) = store.process_batch([tx(4, timedelta(hours=3))])
    assert refraud["terminal_fraud_rate_1d_after_delay"] == pytest.approx(1 / 3)


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
    store = InMemoryFeatureStore(label_delay=timedelta(0))  # state lives 31 d
    store.process_batch([tx(1, timedelta(0)), tx(2, timedelta(days=20))])
    store.process_batch([tx(3, timedelta(days=32), card_id="card_B")])
    assert store.apply_labels([label(1, timedelta(days=32))]) == 0  # older than the TTL
    assert store.apply_labels([label(2, timedelta(days=32))]) == 1


def test_state_lasts_the_label_delay_plus_the_longest_window() -> None:
    store = InMemoryFeatureStore()  # 7-day delay: 28 d windows reach 35 d back
    store.process_batch([tx(1, timedelta(0)), tx(2, timedelta(days=20), card_id="card_B")])
    store.process_batch([tx(3, timedelta(days=34), card_id="card_C", terminal_id="term_2")])
    assert store.apply_labels([label(1, timedelta(days=34))]) == 1  # a 34-day-old transaction
    (late,) = store.process_batch([tx(4, timedelta(days=34, hours=12), card_id="card_D")])
    assert late["terminal_count_28d_after_delay"] == 2.0  # tx1, tx2
    assert late["terminal_fraud_rate_28d_after_delay"] == pytest.approx(1 / 2)
    assert late["terminal_count_28d"] == 1.0  # tx2
    store.process_batch([tx(5, timedelta(days=37), card_id="card_E", terminal_id="term_2")])
    assert store.apply_labels([label(1, timedelta(days=37))]) == 0  # older than 36 d: expired
    assert store.apply_labels([label(2, timedelta(days=37))]) == 1


def test_remembered_card_states_stay_within_their_bytes_least_recently_used_first_out() -> None:
    from stream.features.redis_store import _CardCache

    entry = _CardCache.ENTRY_BYTES
    cache = _CardCache(max_bytes=3 * (entry + 66))
    cache.put({f"card{i}": (b"v" * 8, b"r" * 66, 1) for i in range(3)})
    assert len(cache) == 3 and cache.bytes == 3 * (entry + 66)
    assert set(cache.get(["card0"])) == {"card0"}  # now the most recently used
    cache.put({"card3": (b"v" * 8, b"r" * 66, 1)})  # card1 goes, the least recently used
    assert set(cache.get(["card0", "card1", "card2", "card3"])) == {"card0", "card2", "card3"}
    cache.put({"card0": (b"v" * 8, b"", 0)})  # a smaller state of a remembered card
    assert cache.bytes == 3 * entry + 2 * 66
    cache.forget(["card0", "card9"])
    assert len(cache) == 2 and cache.bytes == 2 * (entry + 66)
    # Thousands of one-row states count for their entries too, not just their rows.
    many = _CardCache(max_bytes=100 * (entry + 66))
    many.put({f"c{i}": (b"v" * 8, b"r" * 66, 1) for i in range(5_000)})
    assert len(many) == 100
    off = _CardCache(max_bytes=0)  # FRAUD_CARD_CACHE_MB=0: nothing remembered
    off.put({"c": (b"v" * 8, b"r", 1)})
    assert len(off) == 0 and off.get(["c"]) == {}
