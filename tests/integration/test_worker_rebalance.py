"""A second worker joins mid-stream: the group rebalances while traffic flows.

Every transaction gets a decision; no committed offset ever runs ahead of its outputs (sampled
while the traffic flows: every input below a partition's committed offset already has a
decision on the decisions topic); and the Redis aggregates equal a replay of the same events.
"""

from __future__ import annotations

import threading
import time

import orjson
import pytest
from confluent_kafka import TopicPartition

from fraud.settings import KafkaConnection
from stream.features import RedisFeatureStore
from stream.kafka_io import make_consumer
from tests.integration.test_worker_failover import (
    DECIDED,
    _all_decisions,
    _events_in_time_order,
    _state,
)
from tests.support.worker import (
    BackgroundTraffic,
    decisions_by_transaction,
    group_assignment,
    scrape,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class OffsetSampler:
    """Reads, again and again, the group's committed offsets and then the decisions topic's
    end offsets: a decision written before a commit is below those ends."""

    def __init__(self, bootstrap: str, group: str, inputs: str, outputs: str) -> None:
        self.kafka = KafkaConnection(bootstrap)
        self.group, self.inputs, self.outputs = group, inputs, outputs
        self.samples: list[tuple[dict[int, int], dict[int, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> OffsetSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        committer = make_consumer(self.kafka, self.group)
        reader = make_consumer(self.kafka, f"{self.group}-sampler")
        try:
            while not self._stop.is_set():
                committed = committer.committed(
                    [TopicPartition(self.inputs, p) for p in range(4)], timeout=10
                )
                ends = {
                    p: reader.get_watermark_offsets(
                        TopicPartition(self.outputs, p), timeout=10, cached=False
                    )[1]
                    for p in range(4)
                }
                self.samples.append(({tp.partition: tp.offset for tp in committed}, ends))
                time.sleep(0.2)
        finally:
            committer.close()
            reader.close()


def test_a_second_worker_joins_mid_stream(worker_env, consume_raw, redis_client):
    topics, bootstrap = worker_env.topics, worker_env.stack.bootstrap
    members = lambda: group_assignment(bootstrap, worker_env.group, topics["transactions"])  # noqa: E731
    sampler = OffsetSampler(
        bootstrap, worker_env.group, topics["transactions"], topics["decisions"]
    )
    with (
        worker_env.worker("first") as first,
        sampler,
        BackgroundTraffic(worker_env, rate=300) as traffic,
    ):
        wait_until(lambda: scrape(first)[DECIDED] >= 300, 60, "the first worker deciding")
        with worker_env.worker("second") as second:
            wait_until(
                lambda: sorted(map(len, members().values())) == [2, 2],
                90,
                "the partitions split between the two workers",
            )
            wait_until(lambda: scrape(second)[DECIDED] >= 300, 60, "the second worker deciding")
            report = traffic.stop()
            inputs = consume_raw(topics["transactions"], count=report.sent)
            expected = {orjson.loads(r.value)["transaction_id"] for r in inputs}
            decisions_raw = consume_raw(topics["decisions"], count=len(expected))
            decisions = _all_decisions(consume_raw, topics, expected)
            time.sleep(2)  # a last commit and sample after the traffic ended

    # Every transaction decided (at least once); repeats carry the same features.
    decisions_by_transaction(decisions, expected)

    # No committed offset ahead of its outputs, at any sampled moment.
    where = {(r.partition, r.offset): orjson.loads(r.value)["transaction_id"] for r in inputs}
    written = [
        (r.partition, r.offset, orjson.loads(r.value)["transaction_id"]) for r in decisions_raw
    ]
    assert len(sampler.samples) > 20
    ahead = []
    for committed, ends in sampler.samples:
        out = {tx for partition, offset, tx in written if offset < ends.get(partition, 0)}
        for (partition, offset), tx in where.items():
            if offset < (committed.get(partition) or 0) and tx not in out:
                ahead.append((partition, offset, tx))
    assert not ahead, ahead[:5]
    assert any(c for c, _ in sampler.samples), "no commit was ever sampled"

    # The aggregates equal a replay of the same events, in time order.
    events = _events_in_time_order(inputs)
    live = RedisFeatureStore(redis_client, worker_env.redis_prefix)
    clean = RedisFeatureStore(redis_client, f"{worker_env.redis_prefix}-clean")
    try:
        for start in range(0, len(events), 500):
            clean.process_batch(events[start : start + 500])
        assert _state(redis_client, live) == _state(redis_client, clean)
    finally:
        clean.clear()
