"""The real broker and the real Redis answer, and behave as the product relies on."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from stream.kafka_io import make_consumer, make_producer
from tests.support.stack import Stack, kafka_version

pytestmark = pytest.mark.integration


def _listening_pid(port: int) -> int:
    """The pid of the process listening on a loopback port (via `ss`, from iproute2)."""
    out = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"pid=(\d+)", out)
    assert match, f"nothing listens on port {port}: {out!r}"
    return int(match.group(1))


def test_broker_is_apache_kafka_from_the_pinned_jars(stack: Stack) -> None:
    if stack.kind != "local":
        pytest.skip("container path: the image tag pins the version")
    pid = _listening_pid(int(stack.bootstrap.rsplit(":", 1)[1]))
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"kafka.Kafka" in cmdline
    classpath = cmdline[cmdline.index(b"-cp") + 1].decode()
    assert f"libs-{kafka_version()}" in classpath
    assert any(
        Path(jar).name == f"kafka_2.13-{kafka_version()}.jar"
        for jar in Path(classpath.removesuffix("/*")).glob("kafka_2.13-*.jar")
    )


def test_produce_and_consume_keeps_each_key_on_one_partition(stack, topic_factory, unique_name):
    topic = topic_factory("roundtrip", partitions=4)
    producer = make_producer(stack.kafka)
    sent = {f"tx-{i}": f"card-{i % 7}" for i in range(200)}
    for tx, card in sent.items():
        producer.produce(topic, key=card, value=tx.encode())
    assert producer.flush(15) == 0

    consumer = make_consumer(stack.kafka, unique_name("group"))
    consumer.subscribe([topic])
    partition_of_card: dict[str, set[int]] = {}
    received: list[str] = []
    try:
        for _ in range(200):
            for message in consumer.consume(200, timeout=1.0):
                assert message.error() is None
                received.append(message.value().decode())
                partition_of_card.setdefault(message.key().decode(), set()).add(message.partition())
            if len(received) >= len(sent):
                break
    finally:
        consumer.close()
    assert sorted(received) == sorted(sent)
    assert all(len(parts) == 1 for parts in partition_of_card.values())
    assert len({p for parts in partition_of_card.values() for p in parts}) > 1


def test_broker_refuses_to_auto_create_topics(stack, unique_name):
    producer = make_producer(stack.kafka, {"message.timeout.ms": 3000})
    errors = []
    producer.produce(
        unique_name("nonexistent"), value=b"x", on_delivery=lambda err, _: errors.append(err)
    )
    producer.flush(10)
    assert errors and errors[0] is not None


def test_redis_answers_and_runs_scripts(redis_client, unique_name):
    key = unique_name("test")
    # The stream's aggregates rely on Lua scripts executing atomically on the server.
    incr_twice = (
        "redis.call('INCRBY', KEYS[1], ARGV[1]); return redis.call('INCRBY', KEYS[1], ARGV[1])"
    )
    assert redis_client.eval(incr_twice, 1, key, 5) == 10
    assert redis_client.info("server")["redis_version"]
    redis_client.delete(key)
