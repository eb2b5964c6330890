"""Consumer lag of one group, read from Kafka: the thin edge around `stream.monitoring.lag`, and its exporter.

Where the numbers come from, per poll:

- committed offsets: the group coordinator (OffsetFetch), the same source as Kafka's own
  `kafka-consumer-groups --describe`;
- log-end offsets: ListOffsets (latest), sampled into each partition's `EndOffsetTable`;
- the commit history the status is judged on: the group's offset-commit records in
  `__consumer_offsets` (every commit, with the broker's commit time, including commits that did
  not move), read from `lookback_s` ago on start so one poll already has a window to judge.

On first sight of a partition its log-end table is seeded with ListOffsets-by-timestamp across
the lookback; this assumes message timestamps are producer wall-clock time (Kafka's default
CreateTime). Live samples replace the seed as they accumulate.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_client import CollectorRegistry, Counter, Gauge

from fraud.errors import ConfigError, ServiceUnavailableError
from fraud.settings import KafkaConnection
from stream.kafka_io import make_admin, make_consumer
from stream.monitoring.lag import (
    Commit,
    CommitWindow,
    EndOffsetTable,
    GroupLag,
    LagRules,
    PartitionLag,
    evaluate_partition,
    lag_seconds,
)

log = logging.getLogger(__name__)

OFFSETS_TOPIC = "__consumer_offsets"
DEFAULT_LAG_PORT = 6067
TopicPart = tuple[str, int]


# -- __consumer_offsets records (pure) -------------------------------------------------------


@dataclass(frozen=True)
class CommitRecord:
    """An offset commit read from `__consumer_offsets`; offset None is a deletion (tombstone)."""

    group: str
    topic: str
    partition: int
    offset: int | None
    timestamp: float


def java_string_hash(text: str) -> int:
    """Java's `String.hashCode()` (UTF-16 code units, 32-bit signed overflow)."""
    value = 0
    utf16 = text.encode("utf-16-be")
    for i in range(0, len(utf16), 2):
        value = (31 * value + int.from_bytes(utf16[i : i + 2], "big")) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def offsets_partition_for(group: str, partitions: int) -> int:
    """The `__consumer_offsets` partition holding `group`'s commits (Kafka's `partitionFor`)."""
    hashed = java_string_hash(group)
    return 0 if hashed == -(1 << 31) else abs(hashed) % partitions


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        length = self.take(">h")
        return self._text(length)

    def compact_string(self) -> str:
        shift = length_plus_one = 0
        while True:
            byte = self.take(">B")
            length_plus_one |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
        return self._text(length_plus_one - 1)

    def _text(self, length: int) -> str:
        if length < 0:
            return ""
        text = self.data[self.pos : self.pos + length].decode()
        self.pos += length
        return text


def parse_offset_commit(key: bytes | None, value: bytes | None) -> CommitRecord | None:
    """Decode an OffsetCommit record (key versions 0-1, value versions 0-4); None for others."""
    if not key or len(key) < 2:
        return None
    reader = _Reader(key)
    if reader.take(">h") not in (0, 1):
        return None  # group metadata and the new coordinator's records
    group, topic, partition = reader.string(), reader.string(), reader.take(">i")
    if value is None:
        return CommitRecord(group, topic, partition, None, 0.0)
    body = _Reader(value)
    version = body.take(">h")
    offset = body.take(">q")
    if version >= 3:
        body.take(">i")  # leader epoch
    if version >= 4:
        body.compact_string()  # metadata
    else:
        body.string()
    commit_ms = body.take(">q")
    return CommitRecord(group, topic, partition, offset, commit_ms / 1000.0)


# -- the monitor -------------------------------------------------------------------------


def _result(future: Any, what: str, timeout_s: float) -> Any:
    try:
        return future.result(timeout=timeout_s)
    except KafkaException as exc:
        raise ServiceUnavailableError(f"Kafka did not answer {what}: {exc}") from exc
    except TimeoutError as exc:
        raise ServiceUnavailableError(f"Kafka did not answer {what} within {timeout_s} s") from exc


class LagMonitor:
    """Polls one consumer group's offsets and grades each partition; one instance per group."""

    def __init__(
        self,
        kafka: KafkaConnection,
        group: str,
        rules: LagRules | None = None,
        lookback_s: float = 900.0,
        seed_points: int = 10,
        max_samples: int = 120,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kafka = kafka
        self.group = group
        self.rules = rules or LagRules()
        self.lookback_s = lookback_s
        self.seed_points = seed_points
        self.max_samples = max_samples
        self.timeout_s = timeout_s
        self.clock = clock
        self.tables: dict[TopicPart, EndOffsetTable] = {}
        self.windows: dict[TopicPart, CommitWindow] = {}
        self._admin: AdminClient | None = None
        self._commits: Consumer | None = None
        self._commits_tp: TopicPart | None = None
        self._commits_next = 0

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = make_admin(self.kafka)
        return self._admin

    def close(self) -> None:
        if self._commits is not None:
            self._commits.close()
            self._commits = None

    # -- one poll -------------------------------------------------------------------------

    def poll(self) -> GroupLag:
        """Read commits, offsets and membership now, and grade every partition of the group."""
        self._read_commits()
        committed = self._committed_offsets()
        state, members, owners = self._describe()
        partitions = sorted(set(committed) | set(owners))
        now = self.clock()
        ends = self._end_offsets(partitions)
        self._seed_tables([tp for tp in partitions if tp not in self.tables], ends, now)
        rows = []
        for tp in partitions:
            table = self.tables.setdefault(tp, EndOffsetTable(self.max_samples))
            table.add(now, ends[tp])
            rows.append(self._grade(tp, committed.get(tp), ends[tp], table, now))
        return GroupLag(self.group, state, members, now, tuple(rows))

    def _grade(
        self, tp: TopicPart, committed: int | None, end: int, table: EndOffsetTable, now: float
    ) -> PartitionLag:
        window = self.windows.get(tp)
        commits = window.with_lags(table) if window else []
        lag = None if committed is None else max(0, end - committed)
        return PartitionLag(
            topic=tp[0],
            partition=tp[1],
            committed_offset=committed,
            log_end_offset=end,
            lag=lag,
            lag_seconds=lag_seconds(table, committed, end, now),
            status=evaluate_partition(commits, lag, now, self.rules),
            commits_in_window=len(commits),
            last_commit_at=commits[-1].timestamp if commits else None,
        )

    # -- Kafka calls --------------------------------------------------------------------------

    def _committed_offsets(self) -> dict[TopicPart, int]:
        request = [ConsumerGroupTopicPartitions(self.group)]
        futures = self.admin.list_consumer_group_offsets(request, request_timeout=self.timeout_s)
        result = _result(futures[self.group], "the committed offsets", self.timeout_s)
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in result.topic_partitions or []
            if tp.offset >= 0
        }

    def _describe(self) -> tuple[str, int, dict[TopicPart, str]]:
        """The group's state, its member count and which member owns each partition."""
        futures = self.admin.describe_consumer_groups([self.group], request_timeout=self.timeout_s)
        description = _result(futures[self.group], "the group description", self.timeout_s)
        owners = {
            (tp.topic, tp.partition): member.member_id
            for member in description.members
            for tp in (member.assignment.topic_partitions if member.assignment else [])
        }
        state = getattr(description.state, "name", str(description.state))
        return state.title(), len(description.members), owners

    def _list_offsets(
        self, specs: dict[TopicPartition, OffsetSpec]
    ) -> dict[TopicPart, tuple[int, int]]:
        """(offset, timestamp in ms) per partition for each ListOffsets spec."""
        if not specs:
            return {}
        futures = self.admin.list_offsets(specs, request_timeout=self.timeout_s)
        results = {}
        for tp, future in futures.items():
            info = _result(future, "log offsets", self.timeout_s)
            results[(tp.topic, tp.partition)] = (info.offset, info.timestamp)
        return results

    def _end_offsets(self, partitions: Iterable[TopicPart]) -> dict[TopicPart, int]:
        specs = {TopicPartition(t, p): OffsetSpec.latest() for t, p in partitions}
        return {tp: offset for tp, (offset, _) in self._list_offsets(specs).items()}

    def _seed_tables(self, fresh: list[TopicPart], ends: dict[TopicPart, int], now: float) -> None:
        """Log-end samples from the past for partitions seen for the first time.

        Kafka's time index answers "first offset at or after time T", which is the log end at T.
        The times are spaced geometrically back from now (recent lag needs the finer grid), and
        the newest message's own timestamp anchors the table at its end.
        """
        if not fresh:
            return
        tables = {tp: EndOffsetTable(self.max_samples) for tp in fresh}
        for i in range(self.seed_points):
            at = now - self.lookback_s * 0.5**i
            specs = {
                TopicPartition(t, p): OffsetSpec.for_timestamp(int(at * 1000)) for t, p in fresh
            }
            for tp, (offset, _) in self._list_offsets(specs).items():
                # -1: nothing was written at or after `at`, so the log end then was today's.
                tables[tp].add(at, ends[tp] if offset < 0 else min(offset, ends[tp]))
        newest = {TopicPartition(t, p): OffsetSpec.max_timestamp() for t, p in fresh}
        for tp, (offset, timestamp_ms) in self._list_offsets(newest).items():
            if offset >= 0 and 0 < timestamp_ms / 1000 <= now:
                tables[tp].add(timestamp_ms / 1000, min(offset + 1, ends[tp]))
        self.tables.update(tables)

    def _commit_reader(self) -> tuple[Consumer, TopicPart]:
        """A consumer on the group's `__consumer_offsets` partition, from `lookback_s` ago."""
        if self._commits is None or self._commits_tp is None:
            metadata = self.admin.list_topics(OFFSETS_TOPIC, timeout=self.timeout_s)
            topic = metadata.topics.get(OFFSETS_TOPIC)
            if topic is None or topic.error is not None or not topic.partitions:
                raise ServiceUnavailableError(
                    f"{OFFSETS_TOPIC} is not readable on {self.kafka.describe()}; no group has committed yet"
                )
            tp = (OFFSETS_TOPIC, offsets_partition_for(self.group, len(topic.partitions)))
            start_ms = int((self.clock() - self.lookback_s) * 1000)
            start, _ = self._list_offsets(
                {TopicPartition(*tp): OffsetSpec.for_timestamp(start_ms)}
            )[tp]
            if start < 0:  # nothing committed since then: start at the end
                start, _ = self._list_offsets({TopicPartition(*tp): OffsetSpec.latest()})[tp]
            consumer = make_consumer(
                self.kafka,
                f"{self.group}.lag-monitor",  # never commits, so the group is never created
                {"enable.auto.commit": False, "fetch.wait.max.ms": 50},
            )
            consumer.assign([TopicPartition(*tp, start)])
            self._commits, self._commits_tp, self._commits_next = consumer, tp, start
        return self._commits, self._commits_tp

    def _read_commits(self) -> None:
        """Consume the group's new commit records up to the partition's end as of now."""
        consumer, tp = self._commit_reader()
        # Asked through the admin client: on the consumer's own connection the request would
        # queue behind its long-polling fetch.
        (high, _) = self._list_offsets({TopicPartition(*tp): OffsetSpec.latest()})[tp]
        deadline = time.monotonic() + self.timeout_s
        while self._commits_next < high and time.monotonic() < deadline:
            messages = consumer.consume(1000, timeout=0.05)
            for message in messages:
                offset = message.offset()
                if message.error() is None and offset is not None:
                    self._commits_next = offset + 1
                    self._apply(parse_offset_commit(message.key(), message.value()))
            if not messages:
                # Transaction markers take offsets but are never delivered: ask where we are.
                (position,) = consumer.position([TopicPartition(*tp)])
                self._commits_next = max(self._commits_next, position.offset)
        if self._commits_next < high:
            log.warning(
                "commit history of %s is %d records behind", self.group, high - self._commits_next
            )

    def _apply(self, record: CommitRecord | None) -> None:
        if record is None or record.group != self.group:
            return
        tp = (record.topic, record.partition)
        if record.offset is None:
            self.windows.pop(tp, None)
            return
        window = self.windows.setdefault(tp, CommitWindow(self.rules.window))
        window.add(Commit(record.offset, record.timestamp))


def check_group_exists(result: GroupLag, kafka: KafkaConnection) -> None:
    """A one-shot report on a group Kafka has never heard of is a typo, not a healthy group."""
    if not result.partitions:
        raise ConfigError(
            f"consumer group '{result.group}' has no committed offsets and no members on "
            f"{kafka.describe()}; check the name (--group)"
        )


# -- Prometheus exporter ----------------------------------------------------------------------


class LagMetrics:
    """The exporter's metrics, in their own registry; label values are bounded by partitions."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r, part = self.registry, ["group", "topic", "partition"]
        self.lag = Gauge("fraud_consumer_lag_messages", "Log-end minus committed", part, registry=r)
        self.lag_seconds = Gauge(
            "fraud_consumer_lag_seconds", "Age of the oldest unconsumed message", part, registry=r
        )
        self.committed = Gauge(
            "fraud_consumer_committed_offset", "Committed offset", part, registry=r
        )
        self.log_end = Gauge("fraud_consumer_log_end_offset", "Log-end offset", part, registry=r)
        self.status = Gauge(
            "fraud_consumer_partition_status",
            "Lag status: 0 OK, 1 WARN, 2 REWIND, 3 STALL, 4 STOP",
            part,
            registry=r,
        )
        self.group_status = Gauge(
            "fraud_consumer_group_status",
            "Worst partition status of the group",
            ["group"],
            registry=r,
        )
        self.group_lag = Gauge(
            "fraud_consumer_group_lag_messages", "Total lag of the group", ["group"], registry=r
        )
        self.group_members = Gauge(
            "fraud_consumer_group_members", "Members of the group", ["group"], registry=r
        )
        self.last_poll = Gauge(
            "fraud_lag_last_poll_timestamp_seconds", "When the last poll succeeded", registry=r
        )
        self.poll_errors = Counter("fraud_lag_poll_errors", "Failed polls", registry=r)
        self._partitions: set[tuple[str, str, str]] = set()

    def update(self, result: GroupLag) -> None:
        seen = set()
        for p in result.partitions:
            labels = (result.group, p.topic, str(p.partition))
            seen.add(labels)
            if p.lag is not None:
                self.lag.labels(*labels).set(p.lag)
                self.committed.labels(*labels).set(p.committed_offset or 0)
            if p.lag_seconds is not None:
                self.lag_seconds.labels(*labels).set(p.lag_seconds)
            self.log_end.labels(*labels).set(p.log_end_offset)
            self.status.labels(*labels).set(int(p.status))
        for labels in self._partitions - seen:
            for gauge in (self.lag, self.lag_seconds, self.committed, self.log_end, self.status):
                try:
                    gauge.remove(*labels)
                except KeyError:
                    pass
        self._partitions = seen
        self.group_status.labels(result.group).set(int(result.status))
        self.group_lag.labels(result.group).set(result.total_lag)
        self.group_members.labels(result.group).set(result.members)
        self.last_poll.set(result.evaluated_at)


def run_exporter(
    monitor: LagMonitor,
    metrics: LagMetrics,
    interval_s: float,
    stop: threading.Event,
    on_result: Callable[[GroupLag], None] | None = None,
) -> None:
    """Poll every `interval_s` until `stop` is set; a failed poll is counted, logged and retried."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            result = monitor.poll()
        except (ServiceUnavailableError, KafkaException) as exc:
            metrics.poll_errors.inc()
            log.warning("lag poll failed: %s", exc)
        else:
            metrics.update(result)
            if on_result is not None:
                on_result(result)
        stop.wait(max(0.0, interval_s - (time.monotonic() - started)))
