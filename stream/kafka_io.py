"""Thin wrappers around confluent-kafka clients.

Clients are created on demand (no network at import), callers' config dicts are copied,
and librdkafka's error callbacks go to the logger instead of stderr.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fraud.errors import ServiceUnavailableError

log = logging.getLogger(__name__)


def _error_cb(err: KafkaError) -> None:
    log.warning("kafka client error: %s", err)


def _config(bootstrap: str, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    # librdkafka's own log lines go through Python logging too (not raw to stderr).
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "error_cb": _error_cb,
        "logger": logging.getLogger("librdkafka"),
    }
    config.update(dict(extra or {}))
    return config


def make_producer(bootstrap: str, extra: Mapping[str, Any] | None = None) -> Producer:
    """An idempotent producer tuned for small records: batches for 5 ms, lz4-compressed."""
    defaults = {"enable.idempotence": True, "linger.ms": 5, "compression.type": "lz4"}
    return Producer(_config(bootstrap, {**defaults, **dict(extra or {})}))


def make_consumer(bootstrap: str, group: str, extra: Mapping[str, Any] | None = None) -> Consumer:
    defaults = {"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    return Consumer(_config(bootstrap, {**defaults, **dict(extra or {})}))


def watermarks(consumer: Consumer, topic: str, partition: int, timeout_s: float) -> tuple[int, int]:
    """(first offset, end offset) of one partition, asked of the broker now (not cached);
    ServiceUnavailableError when it does not answer within `timeout_s`."""
    try:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout_s, cached=False
        )
    except KafkaException as exc:
        raise ServiceUnavailableError(f"no offsets for {topic}[{partition}]: {exc}") from exc
    return int(low), int(high)


def make_admin(bootstrap: str) -> AdminClient:
    return AdminClient(_config(bootstrap, None))


def check_reachable(bootstrap: str, timeout_s: float) -> None:
    """Fail fast, with one clear message, when no bootstrap address accepts a connection."""
    failures = []
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout_s):
                return
        except (OSError, ValueError) as exc:
            failures.append(f"{address.strip()}: {exc}")
    raise ServiceUnavailableError(
        f"no Kafka broker reachable at {bootstrap} ({'; '.join(failures)}); "
        "start one with `make services` or set KAFKA_BOOTSTRAP_SERVERS / --bootstrap"
    )


def wait_for_broker(bootstrap: str, timeout_s: float = 10.0) -> AdminClient:
    """An admin client whose broker answered, or ServiceUnavailableError after `timeout_s`."""
    admin = make_admin(bootstrap)
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
            return admin
        except KafkaException as exc:
            last = exc
            time.sleep(0.2)
    raise ServiceUnavailableError(
        f"no Kafka broker answered at {bootstrap} within {timeout_s:.0f} s ({last}); "
        "start one with `make services` or set KAFKA_BOOTSTRAP_SERVERS"
    )


def require_broker(bootstrap: str, timeout_s: float = 10.0) -> AdminClient:
    """For commands that need Kafka now: fail at once when nothing listens at `bootstrap`, and
    within `timeout_s` when something listens but no broker answers (ServiceUnavailableError)."""
    check_reachable(bootstrap, timeout_s=min(timeout_s, 5.0))
    return wait_for_broker(bootstrap, timeout_s)


def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the topics that do not exist yet; returns the names it created. Replicas: the
    broker's default.replication.factor (1 on the single node, 3 on the cluster)."""
    admin = wait_for_broker(bootstrap, timeout_s)
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [name for name in names if name not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=-1) for name in wanted],
        operation_timeout=timeout_s,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created
