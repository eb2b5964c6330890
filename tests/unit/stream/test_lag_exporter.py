"""The lag monitor's pure edges: commit records from `__consumer_offsets`, and the exporter's gauges."""

from __future__ import annotations

import struct

import pytest
from prometheus_client import generate_latest

from stream.monitoring import GroupLag, PartitionLag, Status
from stream.monitoring.lag_exporter import (
    CommitRecord,
    LagMetrics,
    java_string_hash,
    offsets_partition_for,
    parse_offset_commit,
)

# Captured from Kafka 4.1.1: key version 1, value version 4 (flexible: compact metadata string).
KEY = bytes.fromhex("0001000f6c61676578702d672d616231323833000d6c61676578702d38343733393900000000")
VALUE_V4 = bytes.fromhex("00040000000000000003ffffffff01000001a223ef55f700")


def test_offset_commit_record_from_kafka_4_is_decoded():
    record = parse_offset_commit(KEY, VALUE_V4)
    assert record == CommitRecord("lagexp-g-ab1283", "lagexp-847399", 0, 3, 0x1A223EF55F7 / 1000)


def _key(group: str, topic: str, partition: int, version: int = 1) -> bytes:
    g, t = group.encode(), topic.encode()
    return struct.pack(f">hh{len(g)}sh{len(t)}si", version, len(g), g, len(t), t, partition)


@pytest.mark.parametrize(
    ("value", "offset", "commit_ms"),
    [
        (struct.pack(">hqh2sq", 0, 42, 2, b"md", 1_000), 42, 1_000),  # v0
        (struct.pack(">hqhqq", 1, 43, 0, 2_000, 9_999), 43, 2_000),  # v1: + expire time
        (struct.pack(">hqhq", 2, 44, 0, 3_000), 44, 3_000),  # v2
        (struct.pack(">hqih3sq", 3, 45, 7, 3, b"abc", 4_000), 45, 4_000),  # v3: + leader epoch
    ],
)
def test_older_value_versions_are_decoded(value, offset, commit_ms):
    record = parse_offset_commit(_key("g", "t", 2, version=0), value)
    assert record == CommitRecord("g", "t", 2, offset, commit_ms / 1000)


def test_tombstones_and_other_record_types():
    assert parse_offset_commit(_key("g", "t", 1), None) == CommitRecord("g", "t", 1, None, 0.0)
    assert parse_offset_commit(struct.pack(">hh1s", 2, 1, b"g"), b"\x00") is None  # group metadata
    assert parse_offset_commit(None, VALUE_V4) is None


def test_group_partition_follows_kafkas_string_hash():
    assert java_string_hash("") == 0
    assert java_string_hash("a") == 97
    assert java_string_hash("hello") == 99162322  # "hello".hashCode() in Java
    assert java_string_hash("lagexp-g-ab1283") == -69700379  # negative: 32-bit overflow
    # Kafka's Utils.abs, not a bit mask: the group above committed to partition 3 of 8.
    assert offsets_partition_for("lagexp-g-ab1283", 8) == 3
    assert offsets_partition_for("fraud-scorer", 50) == abs(java_string_hash("fraud-scorer")) % 50


def _poll(*partitions: PartitionLag) -> GroupLag:
    return GroupLag("fraud-scorer", "Stable", 1, 1_700_000_000.0, partitions)


def test_exporter_gauges_follow_the_latest_poll():
    metrics = LagMetrics()
    metrics.update(
        _poll(
            PartitionLag("transactions", 0, 90, 100, 10, 2.5, Status.WARN, 4, 1.0),
            PartitionLag("transactions", 1, 50, 50, 0, 0.0, Status.OK, 4, 1.0),
        )
    )
    sample = metrics.registry.get_sample_value
    labels = {"group": "fraud-scorer", "topic": "transactions", "partition": "0"}
    assert sample("fraud_consumer_lag_messages", labels) == 10
    assert sample("fraud_consumer_lag_seconds", labels) == 2.5
    assert sample("fraud_consumer_partition_status", labels) == Status.WARN.value
    assert sample("fraud_consumer_group_status", {"group": "fraud-scorer"}) == 1
    assert sample("fraud_consumer_group_lag_messages", {"group": "fraud-scorer"}) == 10
    assert sample("fraud_lag_last_poll_timestamp_seconds") == 1_700_000_000.0

    # Partition 1 left the group (topic shrunk or recreated): its series disappear.
    metrics.update(_poll(PartitionLag("transactions", 0, 95, 100, 5, 1.0, Status.OK, 4, 2.0)))
    assert sample("fraud_consumer_lag_messages", {**labels, "partition": "1"}) is None
    assert sample("fraud_consumer_lag_messages", labels) == 5
    assert b'partition="1"' not in generate_latest(metrics.registry)
