"""Analyst labels: build a validated `feedback` record, check the transaction was decided, publish.

    record = build_label("tx-1", "fraud", "analyst-7", labelled_at=now, note="card stolen")
    decision = find_decision(settings.kafka, "decisions", "tx-1")   # None when never decided
    publish_feedback(settings.kafka, "feedback", [record])

`fraud label` (fraud/cli/feedback.py) runs `label_transaction`, which does the three in that
order and publishes nothing when any step fails. `scan_topic` is the one reader of a whole topic
(the label lookup and the retraining set in training/retrain/labelled_set.py both use it).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from fraud.errors import ConfigError, FraudScorerError, ServiceUnavailableError, ValidationError
from fraud.settings import KafkaConnection, Settings
from fraud.times import iso_utc, parse_utc
from schemas import validator
from stream.kafka_io import make_consumer, make_producer, watermarks

log = logging.getLogger(__name__)

LABELS = ("fraud", "legit")
SOURCES = ("analyst", "chargeback")
CHARGEBACK_ANALYST = "chargeback"  # analyst_id of chargeback records; no person may use it
ANALYST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MAX_NOTE = 2000


class UnknownTransactionError(FraudScorerError):
    """No decision was logged for this transaction id: check the id (copy it from the alert) and
    that `decisions` is the topic the scorer writes to (FRAUD_TOPIC_DECISIONS)."""


@dataclass(frozen=True)
class TopicRecord:
    """One Kafka record with its position (for lineage and for ordering within a partition)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes


def check_analyst_id(analyst_id: str) -> str:
    """The id itself, or ValidationError: 1-64 letters, digits, `.`, `_`, `@`, `-`."""
    if not ANALYST_ID.fullmatch(analyst_id):
        raise ValidationError(
            f"analyst id {analyst_id!r} is not valid: use 1-64 letters, digits, '.', '_', '@' "
            "or '-', starting with a letter or digit",
            field="analyst_id",
            rule="pattern",
        )
    return analyst_id


def build_label(
    transaction_id: str,
    label: str,
    analyst_id: str,
    *,
    labelled_at: datetime,
    note: str | None = None,
    source: str = "analyst",
) -> dict[str, Any]:
    """A feedback record that passes schemas/v1/feedback.json, or ValidationError naming the field.

    `analyst_id` "chargeback" is reserved for records with source "chargeback", so that a person's
    label can never pass for a chargeback (and the reverse).
    """
    if label not in LABELS:
        raise ValidationError(f"label must be one of {LABELS}, got {label!r}", "label", "enum")
    if source not in SOURCES:
        raise ValidationError(f"source must be one of {SOURCES}, got {source!r}", "source", "enum")
    check_analyst_id(analyst_id)
    if (analyst_id == CHARGEBACK_ANALYST) != (source == "chargeback"):
        raise ValidationError(
            f"analyst id {CHARGEBACK_ANALYST!r} is reserved for chargebacks "
            f"(got analyst id {analyst_id!r} with source {source!r})",
            field="analyst_id",
            rule="reserved",
        )
    record: dict[str, Any] = {
        "transaction_id": transaction_id,
        "label": label,
        "analyst_id": analyst_id,
        "labelled_at": iso_utc(labelled_at, field="labelled_at"),
        "source": source,
    }
    if note is not None:
        record["note"] = note
    validated: dict[str, Any] = validator("feedback")(record)
    return validated


# -- reading a whole topic ------------------------------------------------------------------


def _fresh_consumer(kafka: KafkaConnection, purpose: str) -> Consumer:
    # A group id is required by the client, but with assign() and no commits no group is formed.
    group = f"fraud-{purpose}-{uuid.uuid4().hex[:12]}"
    return make_consumer(
        kafka,
        group,
        {"enable.auto.commit": False, "enable.auto.offset.store": False, "fetch.wait.max.ms": 50},
    )


def partitions_of(
    consumer: Consumer, topics: Sequence[str], timeout_s: float
) -> list[tuple[str, int]]:
    """(topic, partition) of every partition; ConfigError naming a topic that does not exist."""
    try:
        metadata = consumer.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise ServiceUnavailableError(
            f"Kafka did not answer within {timeout_s:.0f} s ({exc}); start it with "
            "`make services` or set KAFKA_BOOTSTRAP_SERVERS"
        ) from exc
    found = []
    for topic in topics:
        described = metadata.topics.get(topic)
        if described is None or described.error is not None or not described.partitions:
            raise ConfigError(
                f"topic '{topic}' does not exist; create it with `fraud topics` or check "
                "the FRAUD_TOPIC_* settings"
            )
        found += [(topic, partition) for partition in sorted(described.partitions)]
    return found


def scan_topic(
    kafka: KafkaConnection,
    topic: str,
    *,
    contains: bytes | None = None,
    where: Callable[[bytes], bool] | None = None,
    timeout_s: float = 60.0,
) -> Iterator[TopicRecord]:
    """Every record of `topic` from its first offset to the end offsets captured at the start.

    A fresh consumer assigns all partitions (no group membership, nothing committed, so running
    this never moves anyone's offsets); records appended after the start are not read.
    `contains` is a byte-substring prefilter: records whose value lacks it are skipped without
    being parsed; `where` is a cheaper-than-parsing predicate on the raw value, likewise. Raises ConfigError when the topic is missing, ServiceUnavailableError when the
    broker does not answer or the end is not reached within `timeout_s`.

    Limit: the cost grows with everything the topic retains (one pass over the whole log per
    call). That suits the simulated bank and batch retraining; the analyst console looks
    decisions up in its own store instead (`label_transaction`'s `lookup`).
    """
    consumer = _fresh_consumer(kafka, "scan")
    try:
        ends: dict[int, int] = {}
        starts = []
        for _, partition in partitions_of(consumer, [topic], timeout_s):
            low, high = watermarks(consumer, topic, partition, timeout_s)
            if high > low:
                ends[partition] = high
                starts.append(TopicPartition(topic, partition, low))
        if not starts:
            return
        consumer.assign(starts)
        positions = {tp.partition: tp.offset for tp in starts}
        deadline = time.monotonic() + timeout_s
        while any(positions[p] < end for p, end in ends.items()):
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(
                    f"could not read topic '{topic}' to its end within {timeout_s:.0f} s"
                )
            messages = consumer.consume(1000, timeout=0.2)
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("reading %s: %s", topic, error)
                    continue
                partition, offset = message.partition() or 0, message.offset() or 0
                if offset >= ends[partition]:
                    continue
                positions[partition] = offset + 1
                value = message.value() or b""
                if (contains is None or contains in value) and (where is None or where(value)):
                    _, timestamp_ms = message.timestamp()
                    yield TopicRecord(topic, partition, offset, timestamp_ms, message.key(), value)
            if not messages:
                _catch_up(consumer, positions)
    finally:
        consumer.close()


def _catch_up(consumer: Consumer, positions: dict[int, int]) -> None:
    """Control records (transaction markers) and compacted-away offsets are never delivered, so
    a partition can end below its high watermark: ask the consumer where it really is."""
    for tp in consumer.position(consumer.assignment()):
        if tp.offset >= 0:
            positions[tp.partition] = max(positions[tp.partition], tp.offset)


# -- lookup and publish ------------------------------------------------------------------------


def _needs_escaping(text: str) -> bool:
    return not text.isascii() or any(c in text for c in '"\\/') or not text.isprintable()


def find_decision(
    kafka: KafkaConnection, decisions_topic: str, transaction_id: str, *, timeout_s: float = 60.0
) -> dict[str, Any] | None:
    """The first valid decision logged for `transaction_id`, or None.

    Reads `decisions_topic` from the beginning (see `scan_topic`, including its limit). Only
    records whose bytes contain the quoted id are parsed; an id that a JSON encoder might escape
    (non-ASCII, quotes, slashes, control characters) turns the prefilter off, so it costs time but
    never misses a decision.
    """
    needle = None if _needs_escaping(transaction_id) else orjson.dumps(transaction_id)
    validate = validator("decision")
    for record in scan_topic(kafka, decisions_topic, contains=needle, timeout_s=timeout_s):
        try:
            decision = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(decision, dict) or decision.get("transaction_id") != transaction_id:
            continue
        try:
            found: dict[str, Any] = validate(decision)
        except ValidationError as exc:
            log.warning("skipping an invalid decision for %s: %s", transaction_id, exc)
            continue
        return found
    return None


@dataclass(frozen=True)
class Published:
    """Where a feedback record landed."""

    record: Mapping[str, Any]
    partition: int
    offset: int


def publish_feedback(
    kafka: KafkaConnection,
    topic: str,
    records: Sequence[Mapping[str, Any]],
    *,
    timeout_s: float = 30.0,
) -> list[Published]:
    """Produce each record (key = transaction_id) and wait until the broker has all of them.

    Raises ServiceUnavailableError naming how many were not acknowledged.
    """
    producer = make_producer(kafka, {"message.timeout.ms": int(timeout_s * 1000)})
    landed: list[Published] = []
    failures: list[str] = []

    def on_delivery(record: Mapping[str, Any]) -> Any:
        def done(err: KafkaError | None, message: Message) -> None:
            if err is not None:
                failures.append(f"{record['transaction_id']}: {err}")
            else:
                landed.append(Published(record, message.partition() or 0, message.offset() or 0))

        return done

    for record in records:
        producer.produce(
            topic,
            orjson.dumps(record),
            str(record["transaction_id"]).encode(),
            on_delivery=on_delivery(record),
        )
    remaining = producer.flush(timeout_s)
    if failures or remaining:
        raise ServiceUnavailableError(
            f"{len(failures) + remaining} of {len(records)} feedback records were not "
            f"acknowledged by Kafka on '{topic}' ({'; '.join(failures[:3]) or 'timed out'})"
        )
    return landed


@dataclass(frozen=True)
class LabelOutcome:
    published: Published
    decision: Mapping[str, Any]


def label_transaction(
    settings: Settings,
    transaction_id: str,
    label: str,
    analyst_id: str,
    *,
    note: str | None = None,
    now: datetime | None = None,
    timeout_s: float = 60.0,
    lookup: Callable[[str], Mapping[str, Any] | None] | None = None,
) -> LabelOutcome:
    """Validate the label, find the transaction's decision, then publish one feedback record.

    Nothing is published when the record is invalid (ValidationError, also for a label dated
    before the transaction), a topic is missing (ConfigError) or no decision exists for the id
    (UnknownTransactionError). `lookup` finds the decision by transaction id where a caller
    keeps decisions at hand (the analyst console's store); by default, and whenever it finds
    none, the decisions topic is read (`find_decision`).
    """
    labelled_at = now or datetime.now(UTC)
    record = build_label(transaction_id, label, analyst_id, labelled_at=labelled_at, note=note)
    kafka = settings.kafka
    topics = settings.topics
    probe = _fresh_consumer(kafka, "label-check")
    try:
        partitions_of(probe, [topics.decisions, topics.feedback], timeout_s)
    finally:
        probe.close()
    decision = lookup(transaction_id) if lookup is not None else None
    if decision is None:
        decision = find_decision(kafka, topics.decisions, transaction_id, timeout_s=timeout_s)
    if decision is None:
        raise UnknownTransactionError(
            f"no decision for transaction '{transaction_id}' on topic '{topics.decisions}'; "
            "nothing was published"
        )
    if labelled_at < parse_utc(decision["event_time"]):
        raise ValidationError(
            f"labelled_at {record['labelled_at']} is before the transaction's event time "
            f"{decision['event_time']}; nothing was published",
            field="labelled_at",
            rule="after_event_time",
        )
    (published,) = publish_feedback(kafka, topics.feedback, [record], timeout_s=timeout_s)
    return LabelOutcome(published, decision)
