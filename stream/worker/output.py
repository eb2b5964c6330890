"""Durable batch output: produce a batch's records without awaiting each, then wait for all.

The worker acknowledges a batch's input offsets only after `deliver()` returns, so an offset
is never committed before its outputs are on the broker (at-least-once). Records whose delivery
failed for a passing reason (a broker restart, a timeout) are produced again, with growing
pauses, until they land. A record the broker will never take (larger than the topic allows) is
replaced: a dead letter by a shorter one, anything else by a dead letter saying what was
refused; `deliver()` never raises for a record's content.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from fraud.settings import KafkaConnection
from fraud.times import utc_now_iso
from stream.kafka_io import make_producer
from stream.worker.metrics import ScorerMetrics

# Errors no retry can cure: the record itself is refused.
_REFUSED_RECORD = {
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_MSG_SIZE,
    KafkaError.INVALID_MSG,
}
_SHORT_RAW = 256

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    topic: str
    key: bytes | None
    value: bytes


@dataclass
class BatchProducer:
    kafka: KafkaConnection
    metrics: ScorerMetrics | None = None
    config: dict[str, Any] = field(default_factory=dict)
    retry_pause_s: float = 0.5
    max_retry_pause_s: float = 5.0
    flush_timeout_s: float = 60.0
    dead_letter_topic: str = "transactions.dlq"
    _producer: Producer | None = None

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            # Give up on a single attempt after 30 s; deliver() then sends it again.
            self._producer = make_producer(
                self.kafka, {"message.timeout.ms": 30_000, **self.config}
            )
        return self._producer

    async def deliver(self, records: list[tuple[str, bytes | None, bytes]]) -> None:
        """Produce every (topic, key, value) and return once the broker has all of them."""
        pending = [_Pending(topic, key, value) for topic, key, value in records]
        pause = self.retry_pause_s
        while pending:
            failed: list[tuple[_Pending, KafkaError]] = []
            for record in pending:
                self._produce(record, failed)
            # Until every record has its delivery report, `failed` is not complete: a flush
            # that timed out with records still queued must not end the round.
            while queued := await asyncio.to_thread(self._flush):
                log.warning("output delivery slow: %d records still queued", queued)
            retry = [self._instead_of(record, error) for record, error in failed]
            if retry:
                if self.metrics is not None:
                    self.metrics.produce_retries.inc(len(retry))
                first = failed[0][1]
                log.warning(
                    "output delivery failed for %d records (%s); sending again", len(retry), first
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.max_retry_pause_s)
            pending = retry

    def _instead_of(self, record: _Pending, error: KafkaError) -> _Pending:
        """What to send after `record` failed with `error`: itself, or when the broker refuses
        the record as such, something it will take."""
        if error.code() not in _REFUSED_RECORD:
            return record
        if self.metrics is not None:
            self.metrics.dead_letters.labels("output_too_large").inc()
        log.error("%s refused a %d-byte record: %s", record.topic, len(record.value), error)
        if record.topic == self.dead_letter_topic:
            return _Pending(record.topic, record.key, _shortened(record.value))
        refused = {
            "reason": "output_too_large",
            "error": f"{record.topic} refused a {len(record.value)}-byte record: {error.str()}",
            "field": None,
            "rule": "size",
            "raw": record.value[:_SHORT_RAW].decode("utf-8", errors="replace"),
            "raw_size": len(record.value),
            "raw_truncated": len(record.value) > _SHORT_RAW,
            "source": {"topic": record.topic, "partition": 0, "offset": 0},
            "received_at": utc_now_iso(),
        }
        return _Pending(self.dead_letter_topic, record.key, orjson.dumps(refused))

    def _produce(self, record: _Pending, failed: list[tuple[_Pending, KafkaError]]) -> None:
        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failed.append((record, err))

        while True:
            try:
                self.producer.produce(
                    record.topic, record.value, record.key, on_delivery=on_delivery
                )
                return
            except BufferError:
                # Local queue full: let librdkafka drain a little, then try again.
                self.producer.poll(0.05)
            except KafkaException as exc:  # refused before sending (too large, unknown topic)
                failed.append((record, exc.args[0]))
                return

    def _flush(self) -> int:
        return int(self.producer.flush(self.flush_timeout_s))

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None


def _shortened(value: bytes) -> bytes:
    """A dead letter cut to its essentials (the input's copy and the message shortened)."""
    try:
        record = orjson.loads(value)
        record["raw"] = str(record.get("raw", ""))[:_SHORT_RAW]
        record["raw_truncated"] = True
        record["error"] = str(record.get("error", ""))[:200]
        return orjson.dumps(record)
    except (orjson.JSONDecodeError, TypeError, AttributeError):
        return value[:_SHORT_RAW]
