"""BatchProducer.deliver never raises for a record's content: a record the broker refuses is
replaced by one it takes, and a passing failure is retried (no broker: a stub producer)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException

from stream.worker import BatchProducer, ScorerMetrics


class StubProducer:
    """Takes records up to `max_bytes`; fails the first `transient` deliveries with a timeout;
    refuses bigger records at delivery (or, with `local`, when produced)."""

    def __init__(self, max_bytes: int = 1000, transient: int = 0, local: bool = False) -> None:
        self.max_bytes, self.transient, self.local = max_bytes, transient, local
        self.queue: list[tuple[str, bytes, Any]] = []
        self.delivered: list[tuple[str, bytes]] = []

    def produce(self, topic: str, value: bytes, key: Any, on_delivery: Any) -> None:
        if self.local and len(value) > self.max_bytes:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.queue.append((topic, value, on_delivery))

    def flush(self, _timeout: float) -> int:
        for topic, value, on_delivery in self.queue:
            if self.transient:
                self.transient -= 1
                on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), None)
            elif len(value) > self.max_bytes:
                on_delivery(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), None)
            else:
                self.delivered.append((topic, value))
                on_delivery(None, None)
        self.queue = []
        return 0

    def poll(self, _timeout: float) -> int:
        return 0


def deliver(stub: StubProducer, records: list[tuple[str, bytes | None, bytes]]) -> ScorerMetrics:
    metrics = ScorerMetrics()
    out = BatchProducer("unused:9092", metrics, retry_pause_s=0.0, dead_letter_topic="dlq")
    out._producer = stub  # type: ignore[assignment]
    asyncio.run(out.deliver(records))
    return metrics


def test_an_oversized_dead_letter_is_shortened_and_delivered() -> None:
    big = orjson.dumps({"reason": "schema", "raw": "x" * 5000, "error": "e" * 5000})
    stub = StubProducer()
    deliver(stub, [("dlq", None, big), ("decisions", b"k", b"{}")])
    topics = sorted(topic for topic, _ in stub.delivered)
    assert topics == ["decisions", "dlq"]
    shortened = orjson.loads(next(v for t, v in stub.delivered if t == "dlq"))
    assert shortened["raw_truncated"] is True and len(shortened["raw"]) <= 256


def test_any_other_refused_record_becomes_a_dead_letter_saying_so() -> None:
    for local in (False, True):
        stub = StubProducer(local=local)
        metrics = deliver(stub, [("decisions", b"k", b"d" * 5000)])
        [(topic, value)] = stub.delivered
        record = orjson.loads(value)
        assert topic == "dlq" and record["reason"] == "output_too_large"
        assert record["raw_size"] == 5000
        labels = {"reason": "output_too_large"}
        assert metrics.registry.get_sample_value("fraud_dead_letters_total", labels) == 1


def test_passing_failures_are_retried_until_delivered() -> None:
    stub = StubProducer(transient=3)
    metrics = deliver(stub, [("decisions", b"k", b"{}"), ("alerts", b"k", b"{}")])
    assert sorted(t for t, _ in stub.delivered) == ["alerts", "decisions"]
    assert metrics.registry.get_sample_value("fraud_produce_retries_total") == 3
