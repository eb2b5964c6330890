"""The demo's worker decides only the demo's traffic: records left in `transactions` by earlier
runs are skipped by committing the scorer group's offsets at the topic's end first."""

from __future__ import annotations

import pytest

from demo.run import start_at_the_end
from fraud.settings import Settings, TopicNames
from stream.kafka_io import make_consumer, make_producer

pytestmark = pytest.mark.integration


def test_start_at_the_end_skips_what_earlier_runs_left(stack, topic_factory, unique_name):
    topic = topic_factory("demo-tx", partitions=2)
    group = unique_name("demo-group")
    settings = Settings(
        KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap,
        consumer_group=group,
        topics=TopicNames(transactions=topic),
    )
    producer = make_producer(stack.kafka)
    for i in range(7):
        producer.produce(topic, b"{}", f"card-{i}".encode())
    assert producer.flush(10) == 0

    assert start_at_the_end(settings) == 7
    assert start_at_the_end(settings) == 0  # nothing new since

    producer.produce(topic, b"{}", b"card-new")
    assert producer.flush(10) == 0
    consumer = make_consumer(stack.kafka, group)
    consumer.subscribe([topic])
    try:
        records = []
        for _ in range(30):
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                records.append(message)
                break
        assert [r.key() for r in records] == [b"card-new"]  # only what came after
    finally:
        consumer.close()
