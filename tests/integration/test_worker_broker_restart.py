"""Broker restart, on a private single-node Kafka (never the shared one): it stops mid-stream
and starts again. The worker must not crash: /health reports Kafka away and back, and every
transaction sent before and after the restart gets a decision, a repeated one (offsets not yet
committed when the broker went) carrying the same features as the first. Underneath, the
batch producer returns only once every record is on the broker, re-sending what timed out."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from stream.kafka_io import ensure_topics
from stream.worker import BatchProducer, ScorerMetrics
from tests.support.worker import (
    BackgroundTraffic,
    KafkaBroker,
    decisions_by_transaction,
    produce,
    scrape,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DECIDED = 'fraud_transactions_total{outcome="decided"}'


@pytest.fixture(scope="module")
def broker(stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A private broker for this module; each test leaves it running. Asked for after the
    shared stack, whose start fetches the jars; only a container stack has none."""
    if KafkaBroker.libs() is None:
        pytest.skip("no Kafka jars or java for a private broker (the stack runs in containers)")
    server = KafkaBroker(Path(tmp_path_factory.mktemp("kafka")))
    server.format()
    server.start()
    yield server
    server.stop()


def test_batch_producer_returns_once_every_record_is_on_the_broker(broker, consume_raw):
    topic = "producer-retries"
    ensure_topics(broker.kafka, [topic], partitions=2)
    metrics = ScorerMetrics()
    # Attempts time out after 2 s and flushes give up after 1 s: both must lead to re-sends.
    output = BatchProducer(
        broker.kafka,
        metrics,
        config={"message.timeout.ms": 2000},
        retry_pause_s=0.2,
        flush_timeout_s=1.0,
    )
    records = [(topic, b"k%d" % (i % 7), b"record-%04d" % i) for i in range(200)]

    async def scenario() -> float:
        await output.deliver(records[:1])  # connected and known to the broker
        await asyncio.to_thread(broker.stop)
        delivery = asyncio.create_task(output.deliver(records[1:]))
        await asyncio.sleep(5)
        assert not delivery.done(), "deliver() returned while the broker was away"
        await asyncio.to_thread(broker.start)
        restarted = time.monotonic()
        await asyncio.wait_for(delivery, 60)
        return time.monotonic() - restarted

    took = asyncio.run(scenario())
    output.close()
    assert metrics.produce_retries._value.get() >= 199  # every one timed out at least once
    stored = Counter(r.value for r in consume_raw(topic, 200, bootstrap=broker.bootstrap))
    assert set(stored) == {value for _, _, value in records}
    assert took < 30


def _health_if(worker: Any, **expected: bool) -> dict[str, Any] | None:
    """The worker's /health body when it shows `expected`, else None (it must keep answering)."""
    body = httpx.get(worker.url("/health"), timeout=5).json()
    return body if all(body.get(k) == v for k, v in expected.items()) else None


def test_worker_survives_a_broker_restart(broker, worker_env, consume_raw):
    ensure_topics(broker.kafka, worker_env.topics.values(), partitions=2)
    worker_env.extra["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
    # A backlog the worker needs seconds for, waiting before it starts: the broker goes as soon
    # as the first decisions appear, so it goes mid-stream however fast the worker is.
    reports = [produce(worker_env, 10_000, 1.5, bootstrap=broker.bootstrap)]
    with worker_env.worker() as worker:
        wait_until(lambda: scrape(worker).get(DECIDED, 0) > 0, 60, "first decisions")
        broker.stop()
        stopped = scrape(worker)[DECIDED]
        down = wait_until(lambda: _health_if(worker, kafka=False), 30, "/health: kafka down")
        assert down["ready"] is False and down["model"] is not None
        time.sleep(3)
        broker.start()
        wait_until(lambda: _health_if(worker, ready=True), 60, "/health: ready again")
        assert stopped < reports[0].sent, "the burst was decided before the broker went"
        at_restart = scrape(worker)[DECIDED]
        with BackgroundTraffic(worker_env, rate=200, bootstrap=broker.bootstrap) as traffic:
            wait_until(lambda: scrape(worker)[DECIDED] >= at_restart + 200, 60, "decisions after")
            reports.append(traffic.stop())
        sent = sum(report.sent for report in reports)
        inputs = consume_raw(worker_env.topics["transactions"], sent, bootstrap=broker.bootstrap)
        expected = {orjson.loads(r.value)["transaction_id"] for r in inputs}
        assert len(expected) == sent
        decisions = _decided(consume_raw, worker_env.topics["decisions"], expected, broker)
        assert worker.popen.poll() is None, "the worker exited"

    decisions_by_transaction(decisions, expected)


def _decided(consume_raw, topic: str, expected: set[str], broker: KafkaBroker) -> list[dict]:
    deadline = time.monotonic() + 90
    while True:
        records = consume_raw(topic, len(expected), bootstrap=broker.bootstrap)
        decisions = [orjson.loads(r.value) for r in records]
        missing = expected - {d["transaction_id"] for d in decisions}
        if not missing or time.monotonic() > deadline:
            assert not missing, f"{len(missing)} transactions never decided"
            return decisions
        time.sleep(1)
