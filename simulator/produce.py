"""Publish live traffic to Kafka at a steady rate, with its ground truth beside it.

Events go to the transactions topic (key = card_id, value = JSON), ground truth to the
truth topic (key = transaction_id, value = {transaction_id, is_fraud, fraud_scenario}).
Events carry their simulated time as `timestamp` (see simulator.live); the Kafka record
timestamp is the wall-clock moment of sending.
Pacing follows a schedule (event i is due at i / rate seconds), so short stalls are caught
up with a larger batch instead of lowering the rate.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message

from fraud.settings import KafkaConnection
from simulator.bank import derived_rng
from simulator.live import LiveTraffic
from simulator.malformed import MALFORMED_KINDS, malform
from stream.kafka_io import check_reachable, ensure_topics, make_producer, wait_for_broker

log = logging.getLogger(__name__)
MAX_BATCH_SECONDS = 0.02  # at most this much of the schedule is generated in one go
MAX_BATCH_EVENTS = 2000
FLUSH_TIMEOUT_S = 30.0


@dataclass
class ProduceReport:
    """What one run sent and how fast."""

    asked_rate: float
    duration_s: float
    sent: int = 0
    valid: int = 0
    fraud: int = 0
    by_scenario: Counter[str] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)
    delivered: int = 0
    delivery_errors: int = 0
    send_seconds: float = 0.0
    flush_seconds: float = 0.0
    scenario_started_after_s: float | None = None
    simulated_from: str | None = None  # the first and last event's timestamp (simulated time)
    simulated_to: str | None = None

    @property
    def achieved_rate(self) -> float:
        """Events handed to the producer per second: over the asked duration, or over the
        sending period when that took longer (so running late lowers it, never the reverse)."""
        period = max(self.send_seconds, self.duration_s)
        return self.sent / period if period > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "asked_rate": self.asked_rate,
            "achieved_rate": round(self.achieved_rate, 1),
            "duration_s": self.duration_s,
            "send_seconds": round(self.send_seconds, 3),
            "flush_seconds": round(self.flush_seconds, 3),
            "sent": self.sent,
            "valid": self.valid,
            "fraud": self.fraud,
            "by_scenario": dict(sorted(self.by_scenario.items())),
            "malformed": dict(sorted(self.malformed.items())),
            "delivered": self.delivered,
            "delivery_errors": self.delivery_errors,
            "scenario_started_after_s": self.scenario_started_after_s,
            "simulated_from": self.simulated_from,
            "simulated_to": self.simulated_to,
        }


class _Deliveries:
    """Counts acknowledgements of both topics; logs the first few failures."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.delivered = 0
        self.errors = 0

    def __call__(self, err: KafkaError | None, message: Message) -> None:
        if err is not None:
            self.errors += 1
            if self.errors <= 5:
                log.error("delivery to %s failed: %s", message.topic(), err)
        elif message.topic() == self.topic:
            self.delivered += 1


def produce_live(
    kafka: KafkaConnection,
    traffic: LiveTraffic,
    rate: float,
    duration_s: float,
    topic: str,
    truth_topic: str,
    malformed_rate: float = 0.0,
    seed: int = 1,
    partitions: int = 4,
    broker_timeout_s: float = 5.0,
) -> ProduceReport:
    """Send `rate` events per second for `duration_s` seconds; raises ServiceUnavailableError
    within `broker_timeout_s` when no broker answers at `kafka`."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be positive")
    if not 0.0 <= malformed_rate <= 1.0:
        raise ValueError(f"malformed_rate must be within [0, 1], got {malformed_rate}")
    check_reachable(kafka, broker_timeout_s)
    wait_for_broker(kafka, broker_timeout_s)
    ensure_topics(kafka, [topic, truth_topic], partitions, timeout_s=broker_timeout_s)
    producer = make_producer(kafka, {"queue.buffering.max.messages": 500_000})
    deliveries = _Deliveries(topic)
    rng = derived_rng(seed, "malformed")
    report = ProduceReport(asked_rate=rate, duration_s=duration_s)
    total = max(1, round(rate * duration_s))
    max_batch = min(MAX_BATCH_EVENTS, max(1, int(rate * MAX_BATCH_SECONDS)))

    def send(target: str, key: str, value: bytes) -> None:
        while True:
            try:
                producer.produce(target, key=key, value=value, on_delivery=deliveries)
                return
            except BufferError:  # local queue full: let librdkafka drain it
                producer.poll(0.05)

    start = time.monotonic()
    while report.sent < total:
        elapsed = time.monotonic() - start
        if elapsed >= duration_s:  # behind schedule: the run still ends on time
            break
        due = min(total, int(elapsed * rate) + 1) - report.sent
        if due <= 0:
            time.sleep(min(0.002, (report.sent + 1) / rate - elapsed))
            continue
        events, truth = traffic.next_batch(min(due, max_batch))
        report.simulated_from = report.simulated_from or events[0]["timestamp"]
        report.simulated_to = events[-1]["timestamp"]
        if report.scenario_started_after_s is None and traffic.scenario_active:
            report.scenario_started_after_s = round(elapsed, 3)
        broken = rng.random(len(events)) < malformed_rate
        kinds = rng.integers(0, len(MALFORMED_KINDS), len(events))
        for event, record, is_broken, kind in zip(events, truth, broken, kinds, strict=True):
            if is_broken:
                name = MALFORMED_KINDS[int(kind)]
                key, value = malform(event, name, rng)
                send(topic, key, value)
                report.malformed[name] += 1
                continue
            send(topic, event["card_id"], orjson.dumps(event))
            send(truth_topic, record["transaction_id"], orjson.dumps(record))
            report.valid += 1
            if record["is_fraud"]:
                report.fraud += 1
                report.by_scenario[record["fraud_scenario"]] += 1
        report.sent += len(events)
        producer.poll(0)
    report.send_seconds = time.monotonic() - start
    remaining = producer.flush(FLUSH_TIMEOUT_S)
    report.flush_seconds = time.monotonic() - start - report.send_seconds
    report.delivered = deliveries.delivered
    report.delivery_errors = deliveries.errors + remaining
    return report
