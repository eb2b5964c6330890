"""Steady simulated traffic for a chaos run: live transactions at a fixed rate, on a thread,
through one long-lived idempotent producer (acks=all), until `stop()`.

A fault must not slow the sender down: produce() only queues (librdkafka retries on its own for
up to delivery.timeout.ms while a broker is away), so the offered rate holds and what a fault
delays is the acknowledgement. Every transaction is logged with the moment it was handed to
the producer and the moment the broker acknowledged it (or the error), so the verifier knows
exactly what was sent.

    traffic = SteadyTraffic(connection, topic, LiveTraffic(Bank.build(5000, 7), 7), rate=150)
    traffic.start(); ...; log = traffic.stop()
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import partial

import orjson
from confluent_kafka import KafkaError, Message

from fraud.settings import KafkaConnection
from simulator import LiveTraffic
from stream.kafka_io import make_producer

MAX_BATCH_S = 0.02  # at most this much of the schedule is generated in one go
FLUSH_TIMEOUT_S = 120.0


@dataclass
class TrafficLog:
    """Per transaction, in sending order: id, when it was produced and acknowledged (epoch
    seconds; None while unacknowledged or failed), the partition it went to, and errors."""

    rate: float
    ids: list[str] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    acked_at: list[float | None] = field(default_factory=list)
    partition: list[int] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    started_at: float = 0.0
    stopped_at: float = 0.0
    simulated_from: str | None = None
    simulated_to: str | None = None

    @property
    def acknowledged(self) -> int:
        return sum(1 for at in self.acked_at if at is not None)


class SteadyTraffic:
    def __init__(
        self,
        connection: KafkaConnection,
        topic: str,
        traffic: LiveTraffic,
        rate: float,
        producer_config: dict[str, object] | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self._topic = topic
        self._traffic = traffic
        self._producer = make_producer(
            connection, {"queue.buffering.max.messages": 1_000_000, **(producer_config or {})}
        )
        self.log = TrafficLog(rate)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-traffic", daemon=True)
        self._failure: BaseException | None = None

    def start(self) -> SteadyTraffic:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _acked(self, index: int, err: KafkaError | None, message: Message) -> None:
        if err is not None:
            self.log.errors[self.log.ids[index]] = str(err)
            return
        self.log.acked_at[index] = time.time()
        self.log.partition[index] = message.partition() or 0

    def _send(self, key: str, value: bytes, index: int) -> None:
        while True:
            try:
                self._producer.produce(
                    self._topic,
                    value,
                    key,
                    on_delivery=partial(self._acked, index),
                )
                return
            except BufferError:  # local queue full (a long stall): let it drain
                self._producer.poll(0.05)

    def _run(self) -> None:
        log, rate = self.log, self.log.rate
        max_batch = max(1, int(rate * MAX_BATCH_S))
        try:
            log.started_at = time.time()
            start = time.monotonic()
            while not self._stopping.is_set():
                due = int((time.monotonic() - start) * rate) + 1 - len(log.ids)
                if due <= 0:
                    self._producer.poll(0.002)
                    continue
                events, _truth = self._traffic.next_batch(min(due, max_batch))
                log.simulated_from = log.simulated_from or events[0]["timestamp"]
                log.simulated_to = events[-1]["timestamp"]
                for event in events:
                    index = len(log.ids)
                    log.ids.append(event["transaction_id"])
                    log.sent_at.append(time.time())
                    log.acked_at.append(None)
                    log.partition.append(-1)
                    self._send(event["card_id"], orjson.dumps(event), index)
                self._producer.poll(0)
            log.stopped_at = time.time()
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self._failure = exc

    def stop(self) -> TrafficLog:
        """Stop sending, wait for every acknowledgement (or error); the log."""
        self._stopping.set()
        self._thread.join(60)
        if self._failure is not None:
            raise self._failure
        self._producer.flush(FLUSH_TIMEOUT_S)
        return self.log
