"""Durable batch output: produce a batch's records without awaiting each, then wait for all.

The worker acknowledges a batch's input offsets only after `deliver()` returns, so an offset
is never committed before its outputs are on the broker (at-least-once). Records whose delivery
failed (a broker restart, a timeout) are produced again until they land.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from fraud.settings import KafkaConnection
from stream.kafka_io import make_producer
from stream.worker.metrics import ScorerMetrics

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
    flush_timeout_s: float = 60.0
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
        while pending:
            failed: list[_Pending] = []
            for record in pending:
                self._produce(record, failed)
            # Until every record has its delivery report, `failed` is not complete: a flush
            # that timed out with records still queued must not end the round.
            while queued := await asyncio.to_thread(self._flush):
                log.warning("output delivery slow: %d records still queued", queued)
            if failed:
                if self.metrics is not None:
                    self.metrics.produce_retries.inc(len(failed))
                log.warning("output delivery failed for %d records; sending again", len(failed))
                await asyncio.sleep(self.retry_pause_s)
            pending = failed

    def _produce(self, record: _Pending, failed: list[_Pending]) -> None:
        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failed.append(record)

        while True:
            try:
                self.producer.produce(
                    record.topic, record.value, record.key, on_delivery=on_delivery
                )
                return
            except BufferError:
                # Local queue full: let librdkafka drain a little, then try again.
                self.producer.poll(0.05)

    def _flush(self) -> int:
        return int(self.producer.flush(self.flush_timeout_s))

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None
