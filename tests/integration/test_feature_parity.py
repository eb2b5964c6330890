"""The Redis store against the training replay: the same events give the same feature vectors."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis

from bench.features import history_events, synthetic_history
from fraud.errors import ConfigError
from stream.features import (
    CARD_HABIT_FEATURES,
    FEATURE_NAMES,
    InMemoryFeatureStore,
    RedisFeatureStore,
    state_ttl,
)
from training.data import replay_features

pytestmark = pytest.mark.integration

DELAY = timedelta(hours=12)


@pytest.fixture
def store(
    redis_client: redis.Redis, unique_name: Callable[[str], str]
) -> Iterator[RedisFeatureStore]:
    redis_store = RedisFeatureStore(redis_client, prefix=unique_name("features"), label_delay=DELAY)
    yield redis_store
    redis_store.clear()


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    frame = synthetic_history(3_000, days=4, seed=11)
    twins = frame.sample(30, random_state=5).assign(
        transaction_id=[f"tie{n:03d}" for n in range(30)],
        amount=lambda f: f["amount"] * 1.7 + 0.01,
        terminal_id="term_tied",
    )
    return pd.concat([frame, twins]).sort_values(["timestamp", "transaction_id"], ignore_index=True)


def fraud_labels(events: list[dict[str, Any]], frauds: set[str]) -> list[dict[str, Any]]:
    """Labels of the fraudulent events: the replay assumes each arrives DELAY after its
    transaction; here every other one arrives an hour after instead, as analysts' labels do."""
    fraudulent = [event for event in events if event["transaction_id"] in frauds]
    return [
        {
            "transaction_id": event["transaction_id"],
            "label": "fraud",
            "labelled_at": (pd.Timestamp(event["timestamp"]) + lag).isoformat(),
            "analyst_id": "a1",
            "source": "analyst",
        }
        for event, lag in zip(fraudulent, itertools.cycle((DELAY, timedelta(hours=1))))
    ]


@pytest.fixture(scope="module")
def habits_history() -> pd.DataFrame:
    """Three weeks of a hundred cards: long enough for the card habit features' typical day, with
    online purchases now and then from a second device that a card keeps for a few days."""
    frame = synthetic_history(4_000, days=21, seed=12)
    rng = np.random.default_rng(12)
    online = frame["device_id"].notna().to_numpy()
    other = online & (rng.random(len(frame)) < 0.3)
    day = frame["timestamp"].dt.day.to_numpy() // 3
    frame.loc[other, "device_id"] = [
        f"alt-{card}-{part}" for card, part in zip(frame["card_id"][other], day[other], strict=True)
    ]
    return frame


def stream_replay_and_memory(
    store: RedisFeatureStore, history: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The features of `history` through the Redis store (uneven batches, some replayed, labels
    arriving), through the in-memory store, and by the training replay."""
    events = history_events(history)
    frauds = set(history.loc[history["is_fraud"] == 1, "transaction_id"])
    assert len(frauds) > 10
    in_memory = InMemoryFeatureStore(label_delay=DELAY)
    by_transaction: dict[str, dict[str, float | None]] = {}
    memory_rows = []
    # Uneven batches (a few hours each, shorter than DELAY); now and then a batch is replayed,
    # as after a crash before the offsets were committed.
    cuts = [*range(0, len(events), 97), len(events)]
    for number, (start, end) in enumerate(itertools.pairwise(cuts)):
        if number % 5 == 4:
            replayed = store.process_batch(events[max(0, start - 150) : start])
            for event, features in zip(events[max(0, start - 150) : start], replayed, strict=True):
                assert features == by_transaction[event["transaction_id"]]
        batch = events[start:end]
        for event, features in zip(batch, store.process_batch(batch), strict=True):
            by_transaction[event["transaction_id"]] = features
        memory_rows += in_memory.process_batch(batch)
        labels = fraud_labels(batch, frauds)
        assert store.apply_labels(labels) == in_memory.apply_labels(labels) == len(labels)

    replayed_frame = replay_features(history, DELAY)
    stream_frame = pd.DataFrame(
        [by_transaction[tx] for tx in replayed_frame["transaction_id"]],
        columns=list(FEATURE_NAMES),
        dtype=float,
    )
    memory_frame = pd.DataFrame(memory_rows, columns=list(FEATURE_NAMES), dtype=float)
    return stream_frame, memory_frame, replayed_frame[list(FEATURE_NAMES)]


def test_redis_store_replay_and_in_memory_store_agree(
    store: RedisFeatureStore, history: pd.DataFrame
) -> None:
    stream_frame, memory_frame, expected = stream_replay_and_memory(store, history)
    pd.testing.assert_frame_equal(stream_frame, expected)
    pd.testing.assert_frame_equal(memory_frame, expected)
    assert expected["terminal_fraud_rate_1d_after_delay"].max() > 0
    assert expected["terminal_fraud_rate_7d_after_delay"].max() > 0


def test_card_habits_agree_between_redis_replay_and_memory(
    store: RedisFeatureStore, habits_history: pd.DataFrame
) -> None:
    stream_frame, memory_frame, expected = stream_replay_and_memory(store, habits_history)
    pd.testing.assert_frame_equal(stream_frame, expected)
    pd.testing.assert_frame_equal(memory_frame, expected)
    habits = expected[list(CARD_HABIT_FEATURES)]
    # Every habit feature is exercised: the typical day exists for most events of the last
    # week, and cards take up new terminals and devices.
    last_week = habits_history["timestamp"] >= habits_history["timestamp"].max() - pd.Timedelta(
        days=7
    )
    assert habits.loc[last_week.to_numpy(), "card_count_4d_to_typical"].notna().mean() > 0.5
    assert habits["card_new_terminals_4d"].max() >= 2
    assert habits["card_new_devices_4d"].max() >= 1
    assert habits["seconds_since_card_first_used_device"].notna().sum() > 100
    for name in CARD_HABIT_FEATURES:
        assert habits[name].nunique() > 2, name


def test_labels_through_redis_match_the_in_memory_store(
    redis_client: redis.Redis, unique_name: Callable[[str], str]
) -> None:
    delay = timedelta(minutes=15)
    store = RedisFeatureStore(redis_client, prefix=unique_name("features"), label_delay=delay)
    memory = InMemoryFeatureStore(label_delay=delay)
    base = pd.Timestamp("2024-06-01T10:00:00Z")

    def event(number: int, minutes: int, card: str) -> dict[str, Any]:
        return {
            "transaction_id": f"tx{number}",
            "timestamp": (base + pd.Timedelta(minutes=minutes)).isoformat(),
            "card_id": card,
            "customer_id": "c",
            "terminal_id": "term_9",
            "amount": 25.0,
            "currency": "EUR",
        }

    def label(number: int, minutes: int, verdict: str) -> dict[str, Any]:
        at = (base + pd.Timedelta(minutes=minutes)).isoformat()
        return {"transaction_id": f"tx{number}", "label": verdict, "labelled_at": at}

    steps: list[tuple[str, list[dict[str, Any]]]] = [
        ("events", [event(1, 0, "card_a"), event(2, 1, "card_b"), event(3, 2, "card_c")]),
        ("labels", [label(1, 10, "fraud"), label(2, 10, "fraud"), label(77, 10, "fraud")]),
        ("labels", [label(2, 5, "legit")]),  # older than the fraud label: ignored
        ("events", [event(4, 20, "card_d")]),
        ("labels", [label(2, 30, "legit"), label(3, 30, "fraud"), label(3, 25, "legit")]),
        ("events", [event(5, 29, "card_e"), event(6, 31, "card_f")]),
    ]
    try:
        for kind, payload in steps:
            if kind == "events":
                assert store.process_batch(payload) == memory.process_batch(payload)
            else:
                assert store.apply_labels(payload) == memory.apply_labels(payload)
        last = store.process_batch([event(7, 40, "card_g")])[0]
        assert last == memory.process_batch([event(7, 40, "card_g")])[0]
    finally:
        store.clear()
    assert last["terminal_count_1d"] == 6.0
    assert last["terminal_count_1d_after_delay"] == 4.0  # tx1-tx4: before 0:25
    assert last["terminal_fraud_rate_1d_after_delay"] == pytest.approx(2 / 4)  # tx1 and tx3


class CountingRedis(redis.Redis):  # type: ignore[type-arg]
    """A real client that records the name of every command it sends."""

    commands: list[str]

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(str(args[0]).upper())
        return super().execute_command(*args, **options)


def test_one_read_and_one_write_round_trip_per_batch_with_expiring_keys(
    redis_client: redis.Redis, unique_name: Callable[[str], str]
) -> None:
    client = CountingRedis(connection_pool=redis_client.connection_pool)
    client.commands = []
    store = RedisFeatureStore(client, prefix=unique_name("features"))  # default: 7-day delay
    assert store.label_delay == timedelta(days=7)
    assert store.ttl == state_ttl(timedelta(days=7)) == timedelta(days=36)
    try:
        events = history_events(synthetic_history(600, days=1, seed=2))
        store.process_batch(events[:10])  # loads the scripts
        client.commands.clear()
        store.process_batch(events[10:])
        assert client.commands == ["EVALSHA", "EVALSHA"]  # read script, then write script
        keys = list(client.scan_iter(match=f"{store.key_prefix}*"))
        assert {key.split(b":")[3] for key in keys} == {b"card", b"term", b"tx"}
        ttls = {client.ttl(key) for key in keys}
        # Terminal history must outlive the delay + the 28-day window: 36 days, not 31.
        assert 35 * 86_400 < min(ttls) and max(ttls) <= store.ttl.total_seconds()
        card_keys = [key for key in keys if b":card:" in key]
        assert all(key.rsplit(b":", 1)[1].startswith(b"card") for key in card_keys)
        terminal = events[0]["terminal_id"]
        members_before = client.zcard(f"{store.key_prefix}term:{terminal}")
        store.process_batch(events)  # a full replay adds nothing
        assert client.zcard(f"{store.key_prefix}term:{terminal}") == members_before
    finally:
        store.clear()


def test_a_client_decoding_responses_is_refused(redis_client: redis.Redis) -> None:
    kwargs = redis_client.connection_pool.connection_kwargs
    decoding = redis.Redis(host=kwargs["host"], port=kwargs["port"], decode_responses=True)
    with pytest.raises(ConfigError, match="decode_responses"):
        RedisFeatureStore(decoding)
    decoding.close()


def test_a_bad_label_delay_or_too_short_ttl_is_refused(redis_client: redis.Redis) -> None:
    with pytest.raises(ConfigError, match="label_delay"):
        RedisFeatureStore(redis_client, label_delay=timedelta(days=-1))
    with pytest.raises(ConfigError, match="shorter than"):
        RedisFeatureStore(redis_client, label_delay=timedelta(days=14), ttl=timedelta(days=31))
    longer = RedisFeatureStore(redis_client, label_delay=timedelta(days=14), ttl=timedelta(days=60))
    assert longer.ttl == timedelta(days=60)
    assert RedisFeatureStore(redis_client, label_delay=timedelta(days=14)).ttl == timedelta(days=43)
