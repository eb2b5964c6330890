"""The Redis store against the training replay: the same events give the same feature vectors."""

from __future__ import annotations

import itertools
import re
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
    MAX_CARD_HISTORY,
    REDIS_SHARDS,
    InMemoryFeatureStore,
    RedisFeatureStore,
    canonical_card_state,
    state_ttl,
)
from stream.features.redis_store import DEFAULT_CARD_CACHE_BYTES, shard_of
from stream.features.store import StaleStateError
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


def test_two_stores_taking_turns_on_the_same_cards_give_the_features_of_one(
    redis_client: redis.Redis, unique_name: Callable[[str], str]
) -> None:
    """Each store remembers the card states it wrote, so its next batch finds some of them
    moved on by the other: those card shards are refused and the batch computed again, while
    the shards that did write hold transactions the next attempt treats as redeliveries. Their
    terminal members must be in before it reads the counts."""
    events = history_events(synthetic_history(1500, days=2, seed=4))
    prefix = unique_name("features")
    stores = [RedisFeatureStore(redis_client, prefix), RedisFeatureStore(redis_client, prefix)]
    one = RedisFeatureStore(redis_client, unique_name("one"))
    refused = 0
    write = RedisFeatureStore._write

    def counting(self: RedisFeatureStore, *args: Any) -> None:
        nonlocal refused
        try:
            write(self, *args)
        except StaleStateError:
            refused += 1
            raise

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(RedisFeatureStore, "_write", counting)
            for turn, start in enumerate(range(0, len(events), 150)):
                batch = events[start : start + 150]
                got = stores[turn % 2].process(batch)
                np.testing.assert_array_equal(got.matrix, one.process(batch).matrix)
        assert refused > 0  # the retry path ran
    finally:
        stores[0].clear()
        one.clear()


@pytest.mark.parametrize("failure", ["cut-short", "refused"])
def test_members_of_a_failed_write_are_not_counted_twice(
    redis_client: redis.Redis,
    unique_name: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
) -> None:
    """The write round sends a batch's terminal members beside its card writes. When only the
    members land (a write cut short, or every card shard refused), the next attempt finds
    members of events it has no record of: they come off its counts, since it counts its new
    events itself, and every feature (windows ending at t and after the delay, events sharing
    a time) and every terminal equals that of a store that never failed."""
    history = history_events(synthetic_history(300, days=1, seed=5))
    events = [dict(event, terminal_id=f"term{n % 3}") for n, event in enumerate(history)]
    for n in range(10, len(events), 10):
        events[n]["timestamp"] = events[n - 3]["timestamp"]  # same terminal, same time
    delay = timedelta(hours=6)
    store = RedisFeatureStore(redis_client, unique_name("failed"), label_delay=delay)
    memory = InMemoryFeatureStore(label_delay=delay)
    run = store._rounds.run
    failed: list[str] = []

    def members_only(calls: Any) -> Any:
        if failed or not any(call.name == "write_cards" for call in calls):
            return run(calls)
        failed.append(failure)
        answers = iter(run([call for call in calls if call.name == "write_terminals"]))
        if failure == "cut-short":
            raise redis.exceptions.ConnectionError("lost")
        # Refused: every card shard answers with its cards, as the script does when they moved.
        return [
            [card.encode() for card in call.args[4 : 4 + call.args[2]]]
            if call.name == "write_cards"
            else next(answers)
            for call in calls
        ]

    try:
        np.testing.assert_array_equal(
            store.process(events[:100]).matrix, memory.process(events[:100]).matrix
        )
        monkeypatch.setattr(store._rounds, "run", members_only)
        if failure == "cut-short":
            with pytest.raises(redis.exceptions.ConnectionError):
                store.process(events[100:])
        got = store.process(events[100:]).matrix  # refused: computed again within
        assert failed == [failure]
        expected = memory.process(events[100:]).matrix
        for suffix in ("_1d", "_1d_after_delay"):  # the batch's own events fill its windows
            assert expected[:, FEATURE_NAMES.index(f"terminal_count{suffix}")].max() > 1
        np.testing.assert_array_equal(got, expected)
        for terminal in ("term0", "term1", "term2"):
            assert redis_client.zcard(store.terminal_key(terminal)) == 100
    finally:
        store.clear()


def test_a_label_finds_its_transaction_by_the_record_in_its_card_shard(
    redis_client: redis.Redis, unique_name: Callable[[str], str]
) -> None:
    """Labels name only their transaction: its time and terminal come from the transaction's
    record, in whichever card shard holds it. An id a producer reused under another card has a
    record in each card's shard: the label goes to the latest transaction."""
    store = RedisFeatureStore(
        redis_client, prefix=unique_name("features"), label_delay=timedelta(minutes=15)
    )
    base = pd.Timestamp("2024-06-01T10:00:00Z")

    def event(transaction: str, minutes: int, card: str, terminal: str) -> dict[str, Any]:
        at = (base + pd.Timedelta(minutes=minutes)).isoformat()
        return {
            "transaction_id": transaction,
            "timestamp": at,
            "card_id": card,
            "customer_id": "c",
            "terminal_id": terminal,
            "amount": 25.0,
            "currency": "EUR",
        }

    cards = [f"card_{n}" for n in range(64)]
    first, second = next(
        (a, b) for a, b in itertools.combinations(cards, 2) if shard_of(a) != shard_of(b)
    )
    at = (base + pd.Timedelta(minutes=60)).isoformat()
    try:
        store.process_batch([event("tx-1", 0, first, "term_a")])
        store.process_batch(
            [event("tx-1", 5, second, "term_b"), event("tx-2", 6, second, "term_a")]
        )
        labels = [
            {"transaction_id": tx, "label": "fraud", "labelled_at": at}
            for tx in ("tx-1", "tx-2", "tx-unknown")
        ]
        assert store.apply_labels(labels) == 2
        assert set(redis_client.hkeys(_label_key(store, "term_b"))) == {b"tx-1"}
        assert set(redis_client.hkeys(_label_key(store, "term_a"))) == {b"tx-2"}
        early = [{"transaction_id": "tx-2", "label": "fraud", "labelled_at": base.isoformat()}]
        assert store.apply_labels_checked(early).dated_before_transaction == ["tx-2"]
    finally:
        store.clear()


def _label_key(store: RedisFeatureStore, terminal: str) -> str:
    return store.terminal_key(terminal).replace(":term:", ":tlabel:")


def test_two_pipelined_rounds_per_batch_with_expiring_hash_tagged_keys(
    redis_client: redis.Redis, unique_name: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rounds: list[list[str]] = []
    execute = redis.client.Pipeline.execute

    def counted(self: Any, raise_on_error: bool = True) -> Any:
        rounds.append([str(args[0][0]) for args in self.command_stack])
        return execute(self, raise_on_error)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counted)
    store = RedisFeatureStore(redis_client, prefix=unique_name("features"))  # 7-day delay
    assert store.label_delay == timedelta(days=7)
    assert store.ttl == state_ttl(timedelta(days=7)) == timedelta(days=36)
    try:
        events = history_events(synthetic_history(600, days=1, seed=2))
        store.process_batch(events[:10])  # loads the scripts
        rounds.clear()
        store.process_batch(events[10:])
        # Read; write the cards with their transaction records (all or nothing per shard) and
        # the terminals.
        assert len(rounds) == 2 and [set(r) for r in rounds] == [{"MGET", "EVALSHA"}, {"EVALSHA"}]
        assert all(len(r) <= 2 * REDIS_SHARDS for r in rounds)  # one call per shard touched
        keys = list(redis_client.scan_iter(match=f"{store.key_prefix}*"))
        kinds = {re.search(rb"\}:(\w+):", key).group(1) for key in keys}  # type: ignore[union-attr]
        assert kinds == {b"card", b"term", b"tx"}  # labels find transactions by their records
        # Every script's keys share its shard's hash tag: one slot per call on a cluster.
        assert all(re.search(rb":\{[ct]\d+\}:", key) for key in keys)
        ttls = {redis_client.ttl(key) for key in keys}
        # Terminal history must outlive the delay + the 28-day window: 36 days, not 31.
        assert 35 * 86_400 < min(ttls) and max(ttls) <= store.ttl.total_seconds()
        terminal = events[0]["terminal_id"]
        members_before = redis_client.zcard(store.terminal_key(terminal))
        assert members_before > 0
        store.process_batch(events)  # a full replay adds nothing
        assert redis_client.zcard(store.terminal_key(terminal)) == members_before
    finally:
        store.clear()


def test_one_large_batch_of_one_card_matches_the_memory_store(
    store: RedisFeatureStore,
) -> None:
    """9,000 events of one card at one terminal in one batch: one script call reads the card's
    9,000 transaction records, another adds the terminal's 9,000 members (a script that passed
    them to one command through Lua's unpack() would fail near 8,000)."""
    base = pd.Timestamp("2024-06-01T00:00:00Z")
    events = [
        {
            "transaction_id": f"bulk{number:05d}",
            "timestamp": (base + pd.Timedelta(seconds=7 * number)).isoformat(),
            "card_id": "card_bulk",
            "customer_id": "c",
            "terminal_id": "term_bulk",
            "amount": 10.0 + number % 50,
            "currency": "EUR",
        }
        for number in range(9_000)
    ]
    expected = InMemoryFeatureStore(label_delay=DELAY).process_batch(events)
    assert store.process_batch(events) == expected
    assert store.process_batch(events) == expected  # every record read back, nothing recounted
    assert store._client.zcard(store.terminal_key("term_bulk")) == 9_000


def _one_card(count: int) -> tuple[str, list[dict[str, Any]]]:
    """A card of a small synthetic day, and its first `count` events."""
    events = history_events(synthetic_history(50, days=1, seed=4))
    card = events[0]["card_id"]
    return card, [event for event in events if event["card_id"] == card][:count]


def test_a_zombie_cannot_write_over_a_newer_card_state(
    redis_client: redis.Redis, unique_name: Callable[[str], str]
) -> None:
    """Two stores on one card: the state the first read is overwritten by the second before
    the first writes. The first's write is refused; it reads and computes again, so neither
    transaction is lost and none is counted twice."""
    prefix = unique_name("zombie")
    zombie = RedisFeatureStore(redis_client, prefix=prefix)
    owner = RedisFeatureStore(redis_client, prefix=prefix)
    card, mine = _one_card(4)
    try:
        owner.process_batch(mine[:2])
        original_read = zombie._read
        interleaved = []

        def read_then_owner_writes(*args: Any) -> Any:
            state = original_read(*args)
            if not interleaved:  # the new owner decides mine[2] between the zombie's rounds
                interleaved.append(owner.process_batch([mine[2]]))
            return state

        zombie._read = read_then_owner_writes  # type: ignore[method-assign]
        original_write = zombie._write
        refused: list[list[str]] = []

        def counted_write(*args: Any) -> None:
            try:
                original_write(*args)
            except StaleStateError as exc:
                refused.append(exc.cards)
                raise

        zombie._write = counted_write  # type: ignore[method-assign]
        zombie.process_batch([mine[3]])
        assert refused == [[card]]  # refused once, then read and computed again
        fresh = InMemoryFeatureStore()
        expected = fresh.process_batch(mine)
        # The zombie's event saw all three earlier transactions of the card, once each.
        assert zombie.process_batch([mine[3]]) == [expected[3]]
        assert owner.process_batch([mine[2]]) == [expected[2]]
    finally:
        owner.clear()


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


@pytest.mark.parametrize("remembered", [False, True], ids=["read-from-redis", "remembered"])
def test_appended_card_states_read_as_states_rewritten_at_every_batch(
    redis_client: redis.Redis, unique_name: Callable[[str], str], remembered: bool
) -> None:
    """Fifty days of cards (states drop rows older than the 30-day lookback), a runaway card
    past MAX_CARD_HISTORY and late events, in batches: the Redis store appends to card states
    and rewrites them now and then; every feature and every state (read as a rewritten one)
    equals the in-memory store's, which rewrites every state at every batch. Read from Redis
    every time (no remembered states), the states' dropped rows reach the features' code."""
    frame = synthetic_history(6_000, days=50, seed=21)
    start = pd.Timestamp("2024-01-20T00:00:00Z")
    runaway = pd.DataFrame(
        {
            "transaction_id": [f"run{n:05d}" for n in range(1_300)],
            "timestamp": [start + pd.Timedelta(seconds=97 * n) for n in range(1_300)],
            "card_id": "card_runaway",
            "customer_id": "cust_runaway",
            "terminal_id": [f"term{n % 7:07d}" for n in range(1_300)],
            "merchant_category": "grocery",
            "channel": "pos",
            "amount": [5.0 + n % 40 for n in range(1_300)],
            "currency": "EUR",
        }
    )
    events = history_events(pd.concat([frame, runaway], ignore_index=True))
    # Every 50th event arrives 1,000 events (about a week) late: it looks back past what its
    # card has dropped since.
    late = set(range(0, len(events), 50))
    order = [i for i in range(len(events)) if i not in late]
    for i in sorted(late, reverse=True):
        order.insert(min(i + 1_000, len(order)), i)
    events = [events[i] for i in order]
    prefix = unique_name("appended")
    store = RedisFeatureStore(
        redis_client,
        prefix=prefix,
        label_delay=DELAY,
        card_cache_bytes=DEFAULT_CARD_CACHE_BYTES if remembered else 0,
    )
    memory = InMemoryFeatureStore(label_delay=DELAY)
    held_more = 0
    try:
        for first in range(0, len(events), 97):
            batch = events[first : first + 97]
            assert store.process_batch(batch) == memory.process_batch(batch)
            if first % (97 * 20) == 0:
                for card in {event["card_id"] for event in batch}:
                    raw = redis_client.get(store.card_key(card))[8:]  # type: ignore[index]
                    kept = memory._cards[card]
                    assert canonical_card_state(raw) == kept
                    held, kept_rows = len(raw) // 66, len(kept) // 66
                    assert held <= kept_rows + max(8, kept_rows // 4)  # rewritten in time
                    held_more += held > kept_rows
        for card, kept in memory._cards.items():
            raw = redis_client.get(store.card_key(card))[8:]  # type: ignore[index]
            assert canonical_card_state(raw) == kept, card
        assert len(memory._cards["card_runaway"]) // 66 == MAX_CARD_HISTORY
    finally:
        store.clear()
    assert held_more > 0  # states did hold rows their card had dropped, and read right


def test_a_store_remembers_its_card_states_and_reads_a_moved_card_again(
    redis_client: redis.Redis, unique_name: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A card state the store wrote is not read again for its next batch; when another store
    moved the card on meanwhile, the write is refused, the card read again and nothing lost or
    counted twice; a write whose outcome is unknown (Redis failed) forgets what it wrote."""
    prefix = unique_name("remember")
    mine = RedisFeatureStore(redis_client, prefix=prefix)
    other = RedisFeatureStore(redis_client, prefix=prefix)
    card, own = _one_card(5)
    card_key = mine.card_key(card).encode()
    fetched: list[list[bytes]] = []
    run = mine._rounds.run

    def watched(calls: Any) -> Any:
        fetched.extend(call.args for call in calls if call.name == "MGET")
        return run(calls)

    monkeypatch.setattr(mine._rounds, "run", watched)
    expected = InMemoryFeatureStore().process_batch(own)
    try:
        assert mine.process_batch(own[:1]) == expected[:1]
        fetched.clear()
        assert mine.process_batch(own[1:2]) == expected[1:2]
        assert not any(card_key in map(str.encode, keys) for keys in fetched)  # remembered
        assert other.process_batch(own[2:3]) == expected[2:3]  # the card moves on elsewhere
        refused: list[list[str]] = []
        write = mine._write

        def counted(*args: Any) -> None:
            try:
                write(*args)
            except StaleStateError as exc:
                refused.append(exc.cards)
                raise

        monkeypatch.setattr(mine, "_write", counted)
        assert mine.process_batch(own[3:4]) == expected[3:4]
        assert refused == [[card]]  # refused once, then read again
        failing = mine._rounds.run

        def fails_on_write(calls: Any) -> Any:
            if any(call.name == "write_cards" for call in calls):
                run([c for c in calls if c.name == "write_cards"])  # it may well have landed
                raise redis.exceptions.ConnectionError("lost")
            return failing(calls)

        monkeypatch.setattr(mine._rounds, "run", fails_on_write)
        with pytest.raises(redis.exceptions.ConnectionError):
            mine.process_batch(own[4:5])
        monkeypatch.setattr(mine._rounds, "run", watched)
        fetched.clear()
        assert mine.process_batch(own[4:5]) == expected[4:5]  # landed: recorded, not recounted
        assert any(card_key in map(str.encode, keys) for keys in fetched)  # read again
    finally:
        mine.clear()
