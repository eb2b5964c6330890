"""BatchHandler, the heart of the worker, on the in-memory test kit: no broker, no Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis

from fraud.settings import Settings
from schemas import validator
from stream.edge import Source, luhn_valid
from stream.features import InMemoryFeatureStore, features_without_history
from stream.worker import BatchHandler, RawMessage, ScorerMetrics
from stream.worker.testing import MemoryProducer, fixed_model, holding

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PAN = "4111111111111111"


def event(i: int, amount: float = 20.0, card: str = "card-0001", **extra: Any) -> dict[str, Any]:
    return {
        "transaction_id": f"tx-{i}",
        "timestamp": (T0 + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
        "card_id": card,
        "customer_id": "cust-1",
        "terminal_id": "term-1",
        "merchant_category": "5411",
        "channel": "pos",
        "amount": amount,
        "currency": "EUR",
        **extra,
    }


def messages(payloads: Sequence[bytes | Mapping[str, Any]], first_offset: int = 0) -> list:
    return [
        RawMessage(
            p if isinstance(p, bytes) else orjson.dumps(dict(p)),
            Source("transactions", 0, first_offset + n, timestamp=T0.timestamp()),
        )
        for n, p in enumerate(payloads)
    ]


class FlakyStore(InMemoryFeatureStore):
    """An in-memory store that fails like an unreachable Redis while `down` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.batches: list[list[str]] = []

    def process(self, events: Sequence[Mapping[str, Any]], *, write: bool = True) -> Any:
        if self.down:
            raise redis.ConnectionError("connection refused")
        self.batches.append([e["transaction_id"] for e in events])
        return super().process(events, write=write)


def make(
    store: InMemoryFeatureStore | None = None, **settings: Any
) -> tuple[BatchHandler, MemoryProducer, ScorerMetrics]:
    producer, metrics = MemoryProducer(), ScorerMetrics()
    config = Settings(redis_retry_s=0.0, **settings)
    handler = BatchHandler(
        config, store or InMemoryFeatureStore(), holding(fixed_model()), producer, metrics
    )
    return handler, producer, metrics


def handle(handler: BatchHandler, batch: list) -> Any:
    return asyncio.run(handler.handle(batch))


def count(metrics: ScorerMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_good_and_bad_events_in_one_batch() -> None:
    handler, producer, metrics = make()
    good = [event(i, amount=100.0 * (i + 1)) for i in range(6)]
    missing = {k: v for k, v in event(90).items() if k != "amount"}
    batch = messages(
        [
            *good,
            b'{"transaction_id": "tx-broken"',
            missing,
            event(91, extra={"note": f"card {PAN}"}),
        ]
    )
    handle(handler, batch)

    decisions = producer.values("decisions")
    assert [d["transaction_id"] for d in decisions] == [e["transaction_id"] for e in good]
    validate = validator("decision")
    for record in decisions:
        validate(record)
    # fixed_model: amount / 1000 against review 0.5 and decline 0.9.
    assert [d["decision"] for d in decisions] == [
        "approve", "approve", "approve", "approve", "review", "review"
    ]  # fmt: skip
    assert [a["transaction_id"] for a in producer.values("alerts")] == ["tx-4", "tx-5"]
    dead = producer.values("transactions.dlq")
    assert [d["reason"] for d in dead] == ["invalid_json", "schema", "card_number"]
    assert dead[1]["field"] == "amount"
    assert dead[2]["source"] == {"topic": "transactions", "partition": 0, "offset": 8}
    assert PAN not in producer.records[-1][2].decode()
    assert count(metrics, "fraud_transactions_total", outcome="decided") == 6
    assert count(metrics, "fraud_transactions_total", outcome="dead_lettered") == 3
    assert count(metrics, "fraud_dead_letters_total", reason="card_number") == 1


def test_a_card_number_in_card_id_is_tokenised_before_anything_sees_it() -> None:
    handler, producer, metrics = make()
    handle(handler, messages([event(1, card=PAN)]))
    [decision] = producer.values("decisions")
    assert decision["card_id"].startswith("tok_")
    assert not any(
        PAN in value.decode() or PAN.encode() == key for _, key, value in producer.records
    )
    assert count(metrics, "fraud_pan_tokenized_total") == 1
    assert luhn_valid(PAN)


def test_a_failing_model_parks_the_batch_on_the_dead_letter_topic() -> None:
    handler, producer, _metrics = make()

    def broken(_features: Mapping[str, float | None]) -> float:
        raise RuntimeError("model bug")

    handler.models = holding(fixed_model(score=broken))
    handle(handler, messages([event(1), event(2), b"not json"]))
    dead = producer.values("transactions.dlq")
    assert sorted(d["reason"] for d in dead) == [
        "invalid_json",
        "processing_error",
        "processing_error",
    ]
    assert "model bug" in next(d["error"] for d in dead if d["reason"] == "processing_error")
    assert producer.values("decisions") == []


def test_redis_down_decides_with_defaults_then_folds_them_in_once_back() -> None:
    store = FlakyStore()
    handler, producer, metrics = make(store)
    store.down = True
    outage = [event(i, card="card-7") for i in range(3)]
    handle(handler, messages(outage))
    degraded = producer.values("decisions")
    assert [d["degraded"] for d in degraded] == [True] * 3
    assert (
        degraded[0]["features"]["card_count_1h"]
        == features_without_history(outage[0])["card_count_1h"]
    )
    assert count(metrics, "fraud_degraded_decisions_total") == 3

    store.down = False
    handle(handler, messages([event(10, card="card-7")], first_offset=3))
    # The outage's events went in first, oldest first, then the new batch.
    assert store.batches == [["tx-0", "tx-1", "tx-2"], ["tx-10"]]
    after = producer.values("decisions")[-1]
    assert after["degraded"] is False
    assert after["features"]["card_count_1h"] == 3  # the three decided during the outage
    assert count(metrics, "fraud_degraded_backfilled_total") == 3


def test_the_outage_backlog_is_bounded_and_counts_what_it_drops() -> None:
    store = FlakyStore()
    handler, _producer, metrics = make(store, redis_backlog_max=2)
    store.down = True
    handle(handler, messages([event(i) for i in range(5)]))
    store.down = False
    handle(handler, messages([event(9)], first_offset=5))
    assert store.batches[0] == ["tx-3", "tx-4"]  # the newest two were kept
    assert count(metrics, "fraud_degraded_backfill_dropped_total") == 3


def test_a_redelivered_transaction_gets_its_recorded_features_and_is_not_counted_twice() -> None:
    handler, producer, _metrics = make()
    first = [event(1), event(2)]
    handle(handler, messages(first))
    handle(handler, messages([event(2), event(3)], first_offset=2))  # tx-2 again (at-least-once)
    decisions = producer.values("decisions")
    assert decisions[1]["transaction_id"] == decisions[2]["transaction_id"] == "tx-2"
    assert decisions[1]["features"] == decisions[2]["features"]
    assert decisions[3]["features"]["card_count_1h"] == 2  # tx-1 and tx-2, once each


def test_feedback_applies_good_labels_and_dead_letters_bad_ones() -> None:
    handler, producer, _metrics = make()
    handle(handler, messages([event(1), event(2)]))
    label = {
        "transaction_id": "tx-1",
        "label": "fraud",
        "analyst_id": "a.smith",
        "labelled_at": "2026-03-02T12:00:00Z",
        "source": "analyst",
    }
    feedback = [
        RawMessage(orjson.dumps(label), Source("feedback", 0, 0)),
        RawMessage(b"{", Source("feedback", 0, 1)),
        RawMessage(orjson.dumps({**label, "label": "maybe"}), Source("feedback", 0, 2)),
    ]
    applied = asyncio.run(handler.handle_feedback(feedback))
    assert applied == 1
    dead = producer.values("transactions.dlq")
    assert [d["reason"] for d in dead] == ["invalid_json", "schema"]
    assert [d["source"]["topic"] for d in dead] == ["feedback", "feedback"]


@pytest.mark.parametrize("size", [1, 50])
def test_prepare_then_publish_is_handle(size: int) -> None:
    handler, producer, _ = make()
    batch = handler.prepare(messages([event(i) for i in range(size)]))
    assert producer.records == []  # nothing leaves before publish
    asyncio.run(handler.publish(batch))
    assert len(producer.values("decisions")) == size


def test_begin_gives_what_prepare_gives() -> None:
    """The worker's staged path (`begin`: admit now, aggregate on the store lane, score when
    awaited) and the synchronous `prepare` decide a batch of good and bad inputs alike."""
    batch = [event(i, amount=100.0 * i, card=f"card-{i % 3}") for i in range(30)]
    inputs = [*batch[:10], b"not json", *batch[10:20], {**batch[0], "amount": -1}, *batch[20:]]

    def outputs(staged: bool) -> list[tuple[str, Any, Any]]:
        handler, _producer, _metrics = make()
        handler.lane_min_events = 0  # every batch through the lane's thread
        prepared = (
            asyncio.run(began(handler, messages(inputs)))
            if staged
            else handler.prepare(messages(inputs))
        )
        ignored = {"decided_at", "latency_ms", "received_at"}
        return [
            (topic, key, {k: v for k, v in orjson.loads(value).items() if k not in ignored})
            for topic, key, value in prepared.records
        ]

    assert outputs(staged=True) == outputs(staged=False)


async def began(handler: BatchHandler, batch: list) -> Any:
    """`begin` inside the event loop, as the worker's route calls it, and the prepared batch."""
    return await handler.begin(batch)


def test_batches_reach_the_store_in_the_order_they_began() -> None:
    """Several batches begun before any is awaited: the store lane aggregates them in order, so
    a card's later transactions see its earlier ones."""
    store = FlakyStore()
    handler, _producer, _metrics = make(store)
    handler.lane_min_events = 0  # every batch through the lane's thread

    async def run() -> list[Any]:
        begun = [
            handler.begin(messages([event(3 * b + i) for i in range(3)], first_offset=3 * b))
            for b in range(4)
        ]
        return [await prepared for prepared in reversed(begun)][::-1]

    prepared = asyncio.run(run())
    assert store.batches == [[f"tx-{3 * b + i}" for i in range(3)] for b in range(4)]
    counts = [d["features"]["card_count_24h"] for p in prepared for d in p.scored.decisions]
    assert counts == list(range(12))


def test_a_small_batch_finding_the_lane_idle_is_aggregated_at_once() -> None:
    store = FlakyStore()
    handler, _producer, _metrics = make(store)

    async def run() -> None:
        small = handler.begin(messages([event(1)]))
        assert store.batches == [["tx-1"]]  # before anything awaited: no hop to the lane
        handler.lane_min_events = 0
        large = handler.begin(messages([event(2)], first_offset=1))
        await asyncio.gather(small, large)
        assert store.batches == [["tx-1"], ["tx-2"]]

    asyncio.run(run())


def test_begin_parks_the_inputs_of_a_batch_that_fails_itself(monkeypatch) -> None:
    handler, _producer, metrics = make()

    def broken(*_args: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(handler, "_score_aggregated", broken)
    monkeypatch.setattr(handler, "_isolate", broken)
    prepared = asyncio.run(began(handler, messages([event(1), event(2)])))
    assert [d.reason for d in prepared.dead] == ["processing_error"] * 2
    assert count(metrics, "fraud_batch_failures_total") == 1


# -- hostile inputs: one bad event never takes its batch-mates ------------------------------


class PoisonStore(InMemoryFeatureStore):
    """Fails any batch holding one of `poison` (an aggregation bug triggered by one event)."""

    def __init__(self, poison: set[str]) -> None:
        super().__init__()
        self.poison = poison

    def process(self, events: Sequence[Mapping[str, Any]], *, write: bool = True) -> Any:
        if any(e["transaction_id"] in self.poison for e in events):
            raise ValueError("kernel failed on a value")
        return super().process(events, write=write)


def test_an_event_that_breaks_aggregation_is_dead_lettered_alone() -> None:
    handler, producer, _metrics = make(PoisonStore({"tx-13"}))
    handle(handler, messages([event(i) for i in range(40)]))
    decided = [d["transaction_id"] for d in producer.values("decisions")]
    assert decided == [f"tx-{i}" for i in range(40) if i != 13]
    [dead] = producer.values("transactions.dlq")
    assert (dead["reason"], dead["exception"]) == ("processing_error", "ValueError")


def test_impossible_and_far_future_times_poison_nothing() -> None:
    store = InMemoryFeatureStore()
    handler, producer, _metrics = make(store)
    batch = [event(i, card="card-9") for i in range(10)]
    batch[3] = {**batch[3], "timestamp": "2026-13-45T99:99:99Z"}
    batch[6] = {**batch[6], "timestamp": "9999-12-31T23:59:59Z"}
    handle(handler, messages(batch))
    assert len(producer.values("decisions")) == 8
    reasons = sorted(d["reason"] for d in producer.values("transactions.dlq"))
    assert reasons == ["event_time", "schema"]
    handle(handler, messages([event(20, card="card-9")], first_offset=10))
    assert producer.values("decisions")[-1]["features"]["card_count_24h"] == 8  # nothing wiped


def test_a_reused_transaction_id_is_refused_and_the_first_decision_stands() -> None:
    handler, producer, _metrics = make()
    handle(handler, messages([event(1, amount=20.0)]))
    handle(handler, messages([event(1, amount=900.0), event(1, amount=20.0)], first_offset=1))
    decisions = producer.values("decisions")
    assert [d["features"]["amount"] for d in decisions] == [20.0, 20.0]  # and the redelivery
    [dead] = producer.values("transactions.dlq")
    assert (dead["reason"], dead["field"]) == ("duplicate_id", "transaction_id")


def test_a_score_that_is_not_a_probability_never_approves() -> None:
    handler, producer, metrics = make()
    handler.models = holding(fixed_model(score=lambda f: float("nan")))
    handle(handler, messages([event(1)]))
    [decision] = producer.values("decisions")
    assert decision["decision"] == "review" and decision["score"] is None
    assert "score_error" in decision
    validator("decision")(decision)
    assert count(metrics, "fraud_untrusted_scores_total") == 1


def test_a_failure_of_the_batch_itself_parks_its_inputs_and_is_counted(monkeypatch) -> None:
    handler, _producer, metrics = make()

    def broken(*_args: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(handler, "_check_event_times", broken)
    prepared = handler.prepare(messages([event(1), event(2)]))
    assert [d.reason for d in prepared.dead] == ["processing_error"] * 2
    assert count(metrics, "fraud_batch_failures_total") == 1


def test_a_bad_event_in_the_outage_backlog_blocks_nothing() -> None:
    store = FlakyStore()
    handler, producer, metrics = make(store)
    store.down = True
    handle(handler, messages([event(1), event(2)]))
    store.down = False
    original = store.process

    def poisoned(events: Sequence[Mapping[str, Any]], *, write: bool = True) -> Any:
        if any(e["transaction_id"] == "tx-1" for e in events):
            raise ValueError("bad backlog event")
        return original(events, write=write)

    store.process = poisoned  # type: ignore[method-assign]
    handle(handler, messages([event(5)], first_offset=2))
    handle(handler, messages([event(6)], first_offset=3))
    assert [d["degraded"] for d in producer.values("decisions")[-2:]] == [False, False]
    assert count(metrics, "fraud_degraded_backfill_dropped_total") == 2


def test_feedback_applies_the_good_labels_of_a_batch_with_bad_ones() -> None:
    handler, producer, _metrics = make()
    handle(handler, messages([event(1), event(2), event(3)]))
    good = {
        "transaction_id": "tx-1",
        "label": "fraud",
        "analyst_id": "a.smith",
        "labelled_at": "2026-03-02T12:00:00Z",
        "source": "analyst",
    }
    records = [
        good,
        {**good, "transaction_id": "tx-2", "labelled_at": "2026-02-30T12:00:00Z"},
        {**good, "transaction_id": "tx-2", "labelled_at": "9999-01-01T00:00:00Z"},
        {**good, "transaction_id": "tx-3", "source": "chargeback", "analyst_id": "mallory"},
        {**good, "transaction_id": "tx-3", "labelled_at": "2026-03-01T00:00:00Z"},  # before tx
        {**good, "transaction_id": "tx-2", "note": {"deep": {"er": [1]}}},
    ]
    feedback = [
        RawMessage(orjson.dumps(r), Source("feedback", 0, n)) for n, r in enumerate(records)
    ]
    applied = asyncio.run(handler.handle_feedback(feedback))
    assert applied == 1
    reasons = [d["reason"] for d in producer.values("transactions.dlq")]
    assert sorted(reasons) == ["label_source", "label_time", "label_time", "schema", "schema"]


def test_predict_reads_the_aggregates_without_adding_to_them() -> None:
    store = InMemoryFeatureStore()
    handler, _producer, _metrics = make(store)
    admitted = handler.admit(orjson.dumps(event(1, card="card-p")), Source("http", 0, 0))
    handler.score([admitted], write=False)  # type: ignore[list-item]
    handler.score([admitted], write=False)  # type: ignore[list-item]
    handle(handler, messages([event(2, card="card-p")]))
    assert handler.store.process_batch([event(3, card="card-p")])[0]["card_count_1h"] == 1
