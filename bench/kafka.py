"""Kafka plumbing of the benchmark: private topics, pre-loading, paced sending, reading results.

Events come from the simulator's live traffic (stamped with their simulated time, so the cards'
histories look like the training data's) and are generated and encoded before any clock starts,
so the benchmark process spends as little CPU as possible while the worker under test runs
beside it on the same cores. Latency is measured from each record's Kafka timestamp, which the
producer sets when it sends.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from fraud.settings import KafkaConnection
from simulator.live import LiveTraffic
from stream.kafka_io import ensure_topics, make_admin, make_consumer, make_producer

log = logging.getLogger(__name__)

Event = dict[str, Any]
Payload = tuple[str, bytes]  # an event's key and encoded value
Offsets = dict[int, int]
T = TypeVar("T")
TOPIC_KINDS = ("transactions", "decisions", "alerts", "feedback", "dead_letter", "truth")
MAX_SEND_BATCH_S = 0.02  # at most this much of the schedule goes out in one burst


@dataclass(frozen=True)
class BenchTopics:
    """One set of topic names, unique to a benchmark run (or a trial within it)."""

    transactions: str
    decisions: str
    alerts: str
    feedback: str
    dead_letter: str
    truth: str

    @classmethod
    def unique(cls, run_id: str, trial: str) -> BenchTopics:
        names = {kind: f"bench-{run_id}-{trial}-{kind.replace('_', '-')}" for kind in TOPIC_KINDS}
        return cls(**names)

    def with_outputs(self, trial: str, run_id: str) -> BenchTopics:
        """Same input topic, fresh output topics (another worker re-reading the same events)."""
        fresh = BenchTopics.unique(run_id, trial)
        return BenchTopics(
            transactions=self.transactions,
            decisions=fresh.decisions,
            alerts=fresh.alerts,
            feedback=fresh.feedback,
            dead_letter=fresh.dead_letter,
            truth=fresh.truth,
        )

    def names(self) -> list[str]:
        return [getattr(self, kind) for kind in TOPIC_KINDS]

    def env(self) -> dict[str, str]:
        """The worker's FRAUD_TOPIC_* variables."""
        return {f"FRAUD_TOPIC_{kind.upper()}": getattr(self, kind) for kind in TOPIC_KINDS}


class TopicLedger:
    """Creates topics and remembers them, so that everything a run created is deleted."""

    def __init__(self, connection: KafkaConnection, partitions: int) -> None:
        self.connection = connection
        self.partitions = partitions
        self.created: list[str] = []

    def create(self, names: Iterable[str]) -> None:
        wanted = [name for name in names if name not in self.created]
        ensure_topics(self.connection, wanted, self.partitions)
        self.created.extend(wanted)

    def delete_all(self) -> None:
        if not self.created:
            return
        admin = make_admin(self.connection)  # kept alive until every future has resolved
        futures = admin.delete_topics(self.created, operation_timeout=15)
        for name, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                log.warning("could not delete benchmark topic %s: %s", name, exc)
        self.created = []


def generate_events(traffic: LiveTraffic, count: int, batch: int = 2_000) -> list[Event]:
    """`count` live events, in simulated-time order."""
    events: list[Event] = []
    while len(events) < count:
        chunk, _truth = traffic.next_batch(min(batch, count - len(events)), time.time())
        events.extend(chunk)
    return events


def bench_producer(connection: KafkaConnection) -> Producer:
    return make_producer(connection, {"queue.buffering.max.messages": 1_000_000})


def send(producer: Producer, topic: str, key: bytes | str | None, value: bytes) -> None:
    """produce(), waiting for room when the local queue is full."""
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:  # local queue full: let librdkafka drain it
            producer.poll(0.05)


def encode(events: list[Event]) -> list[Payload]:
    """Each event as (key, JSON value), encoded once so that sending costs little CPU."""
    return [(event["card_id"], orjson.dumps(event)) for event in events]


def preload(producer: Producer, topic: str, payloads: list[Payload], batch: int = 2_000) -> float:
    """Send every encoded event as fast as possible; returns the seconds taken."""
    began = time.perf_counter()
    for start in range(0, len(payloads), batch):
        for key, value in payloads[start : start + batch]:
            send(producer, topic, key, value)
        producer.poll(0)
    flush(producer)
    return time.perf_counter() - began


def stable_assignment(connection: KafkaConnection, group: str, topic: str) -> dict[str, list[int]]:
    """Member id -> partitions of `topic` it holds, while `group` is stable; else {}. Raises
    KafkaException when the group cannot be described (no coordinator yet, broker down)."""
    from confluent_kafka import ConsumerGroupState

    admin = make_admin(connection)  # kept referenced until the answer is in
    description = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
    if description.state != ConsumerGroupState.STABLE:
        return {}
    return {
        member.member_id: sorted(
            tp.partition for tp in member.assignment.topic_partitions if tp.topic == topic
        )
        for member in description.members
    }


def group_members(connection: KafkaConnection, group: str, topic: str) -> tuple[str, list[int]]:
    """A consumer group's state and how many partitions of `topic` each of its members holds."""
    admin = make_admin(connection)
    description = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
    held = [
        sum(1 for tp in member.assignment.topic_partitions if tp.topic == topic)
        if member.assignment
        else 0
        for member in description.members
    ]
    return str(description.state), held


def committed_lag(connection: KafkaConnection, group: str, topic: str) -> int:
    """How many records of `topic` lie beyond `group`'s committed offsets (none committed: all)."""
    probe = offset_probe(connection)
    try:
        end = end_offsets(probe, topic)
    finally:
        probe.close()
    reader = make_consumer(connection, group)
    try:
        committed = reader.committed([TopicPartition(topic, p) for p in end], timeout=10)
    finally:
        reader.close()
    return sum(end[tp.partition] - max(0, tp.offset) for tp in committed)


def wait_for_group(
    connection: KafkaConnection,
    group: str,
    topic: str,
    members: int,
    partitions: int,
    timeout_s: float,
) -> float:
    """Wait until `group` is stable with `members` members holding all `partitions` of `topic`
    between them, every member at least one; returns the seconds it took."""
    began = time.monotonic()
    last = ""
    while time.monotonic() - began < timeout_s:
        try:
            state, held = group_members(connection, group, topic)
        except KafkaException as exc:
            state, held = repr(exc), []
        last = f"{state}, partitions per member {held}"
        if (
            state.endswith("STABLE")
            and len(held) == members
            and sum(held) == partitions
            and min(held) > 0
        ):
            return time.monotonic() - began
        time.sleep(0.5)
    raise KafkaException(f"group {group} not settled within {timeout_s:.0f} s (last: {last})")


@dataclass(frozen=True)
class PacedRun:
    sent: int
    start: float  # epoch seconds
    end: float


def send_paced(
    producer: Producer, topic: str, events: list[Event], rate: float, duration_s: float
) -> PacedRun:
    """Event i is due at i / rate seconds; a late tick sends what is due (up to 20 ms worth),
    so short stalls are caught up instead of lowering the rate. Stops after `duration_s`."""
    total = min(len(events), max(1, round(rate * duration_s)))
    payloads = [(event["card_id"], orjson.dumps(event)) for event in events[:total]]
    burst = max(1, int(rate * MAX_SEND_BATCH_S))
    sent = 0
    start_wall, start = time.time(), time.monotonic()
    while sent < total:
        elapsed = time.monotonic() - start
        if elapsed >= duration_s:
            break
        due = min(total, int(elapsed * rate) + 1) - sent
        if due <= 0:
            time.sleep(min(0.002, (sent + 1) / rate - elapsed))
            continue
        for payload in payloads[sent : sent + min(due, burst)]:
            send(producer, topic, payload[0], payload[1])
        sent += min(due, burst)
        producer.poll(0)
    end = start_wall + (time.monotonic() - start)
    flush(producer)
    return PacedRun(sent, start_wall, end)


def flush(producer: Producer) -> None:
    remaining = producer.flush(60)
    if remaining:
        raise KafkaException(f"{remaining} benchmark events still unsent after 60 s")


# --- reading -----------------------------------------------------------------------------


def offset_probe(connection: KafkaConnection) -> Consumer:
    """A consumer used only to ask the broker for log-end offsets (never subscribes)."""
    return make_consumer(connection, f"bench-probe-{uuid.uuid4().hex[:8]}")


# A topic created a moment ago may have no leader yet: asked again, it soon does.
_NOT_READY = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
}


def end_offsets(probe: Consumer, topic: str, retry_s: float = 15.0) -> Offsets:
    """Every partition's log-end offset (asked again while a new topic has no leader yet)."""
    deadline = time.monotonic() + retry_s
    while True:
        try:
            metadata = probe.list_topics(topic, timeout=10).topics[topic]
            offsets: Offsets = {}
            for partition in metadata.partitions:
                _low, high = probe.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10, cached=False
                )
                offsets[partition] = int(high)
            return offsets
        except KafkaException as exc:
            if exc.args[0].code() not in _NOT_READY or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def records_between(start: Offsets, end: Offsets) -> int:
    return sum(end[p] - start.get(p, 0) for p in end)


def wait_for_records(
    probe: Consumer,
    topics: list[str],
    starts: list[Offsets],
    expected: int,
    stall_s: float,
    on_poll: Callable[[int], None] | None = None,
    interval_s: float = 0.25,
    deadline_s: float | None = None,
) -> int:
    """Poll log-end offsets until `expected` records arrived across `topics` (summed), none
    arrived for `stall_s` seconds, or `deadline_s` passed; returns the count reached."""
    count, last_change, last_count = 0, time.monotonic(), -1
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    while True:
        count = sum(
            records_between(start, end_offsets(probe, topic))
            for topic, start in zip(topics, starts, strict=True)
        )
        if on_poll is not None:
            on_poll(count)
        if count != last_count:
            last_change, last_count = time.monotonic(), count
        now = time.monotonic()
        if count >= expected or now - last_change > stall_s or (deadline and now > deadline):
            return count
        time.sleep(interval_s)


def read_records(
    connection: KafkaConnection,
    topic: str,
    start: Offsets,
    end: Offsets,
    parse: Callable[[bytes], T],
) -> list[T]:
    """parse(value) of every record between two offset snapshots of `topic`."""
    return read_messages(
        connection, topic, start, end, lambda message: parse(message.value() or b"")
    )


def read_messages(
    connection: KafkaConnection,
    topic: str,
    start: Offsets,
    end: Offsets,
    parse: Callable[[Message], T],
) -> list[T]:
    """parse(message) of every record between two offset snapshots of `topic` (the message
    gives its partition, offset and timestamp too)."""
    consumer = make_consumer(connection, f"bench-reader-{uuid.uuid4().hex[:8]}")
    wanted = {p: end[p] for p in end if end[p] > start.get(p, 0)}
    consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in wanted])
    remaining = records_between({p: start.get(p, 0) for p in wanted}, wanted)
    parsed: list[T] = []
    deadline = time.monotonic() + 120
    try:
        while remaining > 0 and time.monotonic() < deadline:
            for message in consumer.consume(5_000, timeout=1.0):
                if message.error() is not None:
                    raise KafkaException(message.error())
                if (message.offset() or 0) >= wanted.get(message.partition() or 0, 0):
                    continue
                parsed.append(parse(message))
                remaining -= 1
    finally:
        consumer.close()
    return parsed


@dataclass(frozen=True)
class DecisionTimes:
    decided_at: list[float]  # epoch seconds
    latency_ms: list[float]
    tiers: dict[str, int]  # decisions per tier (approve / review / decline)
    batches: int  # distinct decided_at instants: one per micro-batch


def read_decisions(
    connection: KafkaConnection, topic: str, start: Offsets, end: Offsets
) -> DecisionTimes:
    """decided_at, latency_ms and tier of the decisions between two offset snapshots."""
    instants: dict[str, float] = {}  # one decided_at per micro-batch: parse each once
    tiers: dict[str, int] = {}

    def parse(value: bytes) -> tuple[float, float]:
        record = orjson.loads(value)
        stamp = record["decided_at"]
        if stamp not in instants:
            instants[stamp] = datetime.fromisoformat(stamp).timestamp()
        tier = str(record.get("decision"))
        tiers[tier] = tiers.get(tier, 0) + 1
        return instants[stamp], float(record["latency_ms"])

    pairs = read_records(connection, topic, start, end, parse)
    return DecisionTimes([p[0] for p in pairs], [p[1] for p in pairs], tiers, len(instants))


def read_dead_letter_reasons(
    connection: KafkaConnection, topic: str, start: Offsets, end: Offsets
) -> dict[str, int]:
    """How many dead letters per reason, with the first error message of each reason."""

    def parse(value: bytes) -> tuple[str, str]:
        record = orjson.loads(value)
        return str(record.get("reason")), str(record.get("error"))[:300]

    counts: dict[str, int] = {}
    examples: dict[str, str] = {}
    for reason, error in read_records(connection, topic, start, end, parse):
        counts[reason] = counts.get(reason, 0) + 1
        examples.setdefault(reason, error)
    for reason, error in examples.items():
        log.warning("dead letters (%s), e.g.: %s", reason, error)
    return counts
