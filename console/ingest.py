"""Reading `alerts`, `decisions` and `feedback` into the console's store, on a thread.

    ingest = Ingest(settings, store, from_end=False)
    ingest.start()      # assigns every partition at its stored position; raises ConfigError
                        # naming a missing topic, ServiceUnavailableError when Kafka is down
    ...
    ingest.stop()

No consumer group: partitions are assigned by hand and the positions live in the store, written
in the same transaction as the records they cover (see console/store.py), so a restart resumes
exactly where the last stored batch ended. A partition the store has never read starts at its
first offset, or with `from_end` at the end it had when the console started (that end is stored
at once, so a restart does not skip what arrived in between).

A record that is not valid JSON or breaks its contract is skipped with a warning (its position
still moves on): the scorer's dead-letter topic is where bad input is kept, not here.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from console.store import ConsoleStore, IngestBatch, Position
from fraud.errors import ValidationError
from fraud.settings import Settings
from schemas import validator
from stream.feedback import partitions_of
from stream.kafka_io import make_consumer, watermarks

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 3600.0
KEEP_DECISIONS_DAYS = 31  # the card history shows 30 days


@dataclass
class IngestStatus:
    ready: bool = False
    records: int = 0
    skipped: int = 0
    error: str | None = None
    topics: dict[str, str] = field(default_factory=dict)  # kind -> topic name


def sort_records(
    messages: Iterable[Message], kinds: dict[str, str], status: IngestStatus
) -> IngestBatch:
    """Messages of one read -> a batch: valid records by kind, and the next offset of each
    partition seen. `kinds` maps topic name -> "alert" | "decision" | "feedback"."""
    batch = IngestBatch()
    for message in messages:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("reading %s: %s", message.topic(), error)
            continue
        topic, partition, offset = message.topic() or "", message.partition() or 0, message.offset()
        offset = offset or 0
        batch.positions[(topic, partition)] = offset + 1
        kind = kinds[topic]
        try:
            record = validator(kind)(orjson.loads(message.value() or b""))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            status.skipped += 1
            log.warning("skipping %s[%d]@%d: %s", topic, partition, offset, exc)
            continue
        status.records += 1
        if kind == "alert":
            batch.alerts.append(record)
        elif kind == "decision":
            batch.decisions.append(record)
        else:
            batch.labels.append((record, partition, offset))
    return batch


class Ingest:
    def __init__(self, settings: Settings, store: ConsoleStore, *, from_end: bool = False) -> None:
        self.settings = settings
        self.store = store
        self.from_end = from_end
        topics = settings.topics
        self.kinds = {
            topics.alerts: "alert",
            topics.decisions: "decision",
            topics.feedback: "feedback",
        }
        self.status = IngestStatus(topics={kind: name for name, kind in self.kinds.items()})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        """Assign every partition at its position, then read on a thread until `stop`."""
        consumer = make_consumer(
            self.settings.kafka,
            f"fraud-console-{uuid.uuid4().hex[:12]}",  # required by the client; never joined
            {
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "fetch.wait.max.ms": 100,
            },
        )
        try:
            partitions = partitions_of(consumer, list(self.kinds), timeout_s)
            starts = self._starting_positions(consumer, partitions, timeout_s)
            consumer.assign([TopicPartition(t, p, offset) for (t, p), offset in starts.items()])
        except BaseException:
            consumer.close()
            raise
        self._consumer = consumer
        self._thread = threading.Thread(target=self._run, name="console-ingest", daemon=True)
        self._thread.start()
        self.status.ready = True

    def _starting_positions(
        self, consumer: Consumer, partitions: list[Position], timeout_s: float
    ) -> dict[Position, int]:
        stored = self.store.positions()
        starts: dict[Position, int] = {}
        new: dict[Position, int] = {}
        for topic, partition in partitions:
            if (topic, partition) in stored:
                starts[(topic, partition)] = stored[(topic, partition)]
                continue
            low, high = watermarks(consumer, topic, partition, timeout_s)
            new[(topic, partition)] = starts[(topic, partition)] = high if self.from_end else low
        if new:
            self.store.apply(IngestBatch(positions=new))
        return starts

    def _run(self) -> None:
        assert self._consumer is not None
        pruned = time.monotonic()
        while not self._stop.is_set():
            try:
                messages = self._consumer.consume(500, timeout=0.5)
                if messages:
                    self.store.apply(sort_records(messages, self.kinds, self.status))
                    self.status.error = None
                if time.monotonic() - pruned > PRUNE_EVERY_S:
                    pruned = time.monotonic()
                    self.store.prune(KEEP_DECISIONS_DAYS)
            except Exception as exc:  # keep reading; /health shows the error
                self.status.error = repr(exc)
                log.exception("console ingest failed; reading again from the stored positions")
                self._stop.wait(1.0)
                self._rewind()

    def _rewind(self) -> None:
        """Back to the stored positions: what was read but not stored is read again."""
        assert self._consumer is not None
        stored = self.store.positions()
        try:
            self._consumer.assign([TopicPartition(t, p, o) for (t, p), o in stored.items()])
        except KafkaException as exc:
            log.warning("could not rewind the console's reader: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        self.status.ready = False

    def health(self) -> dict[str, Any]:
        return {
            "ready": self.status.ready,
            "records": self.status.records,
            "skipped": self.status.skipped,
            "error": self.status.error,
            "topics": self.status.topics,
        }
