"""The model monitor's edges: `decisions` + `feedback` from Kafka, references from MLflow, and the
Prometheus gauges `fraud monitor --serve` exposes (default port 6068).

It reads both topics from `lookback_s` ago without joining a consumer group (nothing is committed;
a restart re-reads the lookback), hands each record to the pure `ModelMonitor`, and every
`interval_s` loads missing drift references and refreshes the gauges.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge

from fraud.errors import ConfigError, FraudScorerError, ServiceUnavailableError
from fraud.settings import Settings
from schemas import validator
from stream.kafka_io import make_consumer
from stream.monitoring.drift import SCORE, DriftReference, parse_reference
from stream.monitoring.quality import DECISIONS, LABELS, ModelMonitor, VersionHealth
from stream.scoring import REFERENCE_ARTIFACT

log = logging.getLogger(__name__)

DEFAULT_MONITOR_PORT = 6068
ReferenceLoader = Callable[[str, str], DriftReference | None]


def registry_references(settings: Settings, period: str | None = None) -> ReferenceLoader:
    """Look a version's drift reference up in the MLflow registry (artifact of its run).

    `period` picks the reference period ("validation", "test"); default: the one training
    computed the bin edges on.
    """

    def load(model_name: str, version: str) -> DriftReference | None:
        from stream.scoring import open_store

        client = open_store(settings)
        run_id = client.get_model_version(model_name, version).run_id
        if not run_id:
            return None
        with tempfile.TemporaryDirectory() as folder:
            path = client.download_artifacts(run_id, REFERENCE_ARTIFACT, folder)
            document = orjson.loads(Path(path).read_bytes())
        return parse_reference(document, period)

    return load


class MonitorMetrics:
    """Gauges per model version; series of versions that left the window are removed."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r, v = self.registry, ["model_version"]
        self.labels = Gauge(
            "fraud_live_labels",
            "Labelled decisions in the window, by tier and label",
            ["model_version", "decision", "label"],
            registry=r,
        )
        self.precision_decline = Gauge(
            "fraud_live_precision_decline", "Frauds among labelled declines", v, registry=r
        )
        self.precision_flagged = Gauge(
            "fraud_live_precision_flagged", "Frauds among labelled reviews+declines", v, registry=r
        )
        self.recall = Gauge(
            "fraud_live_recall",
            "Labelled frauds that were flagged / all labelled frauds",
            v,
            registry=r,
        )
        self.score_psi = Gauge(
            "fraud_score_psi", "PSI of live scores against the training reference", v, registry=r
        )
        self.feature_psi = Gauge(
            "fraud_feature_psi",
            "PSI of a top feature against the training reference",
            ["model_version", "feature"],
            registry=r,
        )
        self.drift_decisions = Gauge(
            "fraud_drift_window_decisions", "Decisions in the drift window", v, registry=r
        )
        self.reference_loaded = Gauge(
            "fraud_drift_reference_loaded",
            "1 when the version's reference was found",
            v,
            registry=r,
        )
        self.records = Counter(
            "fraud_monitor_records",
            "Records read, by topic and outcome",
            ["topic", "outcome"],
            registry=r,
        )
        self.pending_labels = Gauge(
            "fraud_monitor_pending_labels", "Labels waiting for their decision", registry=r
        )
        self.unmatched_labels = Gauge(
            "fraud_monitor_unmatched_labels", "Labels dropped without a decision", registry=r
        )
        self.last_update = Gauge(
            "fraud_monitor_last_update_timestamp_seconds",
            "When the gauges were refreshed",
            registry=r,
        )
        self._series: dict[Gauge, set[tuple[str, ...]]] = {}

    def _set(self, gauge: Gauge, labels: tuple[str, ...], value: float | None, seen: set) -> None:
        if value is None:
            return
        gauge.labels(*labels).set(value)
        seen.add((gauge, labels))

    def update(self, health: list[VersionHealth], pending: int, unmatched: int, now: float) -> None:
        seen: set[tuple[Gauge, tuple[str, ...]]] = set()
        for h in health:
            v = (h.version,)
            for decision in DECISIONS:
                for label in LABELS:
                    count = h.quality.counts[(decision, label)]
                    self._set(self.labels, (h.version, decision, label), count, seen)
            self._set(self.precision_decline, v, h.quality.precision_decline, seen)
            self._set(self.precision_flagged, v, h.quality.precision_flagged, seen)
            self._set(self.recall, v, h.quality.recall, seen)
            self._set(self.score_psi, v, h.psi.get(SCORE), seen)
            for feature, value in h.psi.items():
                if feature != SCORE:
                    self._set(self.feature_psi, (h.version, feature), value, seen)
            self._set(self.drift_decisions, v, h.drift_decisions, seen)
            self._set(self.reference_loaded, v, 1.0 if h.has_reference else 0.0, seen)
        for gauge, labels in {(g, lb) for g, series in self._series.items() for lb in series}:
            if (gauge, labels) not in seen:
                gauge.remove(*labels)
        self._series = {}
        for gauge, labels in seen:
            self._series.setdefault(gauge, set()).add(labels)
        self.pending_labels.set(pending)
        self.unmatched_labels.set(unmatched)
        self.last_update.set(now)


class MonitorService:
    def __init__(
        self,
        settings: Settings,
        monitor: ModelMonitor,
        metrics: MonitorMetrics,
        references: ReferenceLoader,
        lookback_s: float,
        reference_retry_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.monitor = monitor
        self.metrics = metrics
        self.references = references
        self.lookback_s = lookback_s
        self.reference_retry_s = reference_retry_s
        self.clock = clock
        self.topics = {
            settings.topics.decisions: ("decision", monitor.add_decision),
            settings.topics.feedback: ("feedback", monitor.add_feedback),
        }
        self._validators = {topic: validator(kind) for topic, (kind, _) in self.topics.items()}
        self._consumer: Consumer | None = None
        self._retry_at: dict[str, float] = {}
        self.positions: dict[tuple[str, int], int] = {}

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = self._assign()
        return self._consumer

    def _assign(self) -> Consumer:
        """Every partition of both topics, from the first record at or after the lookback."""
        consumer = make_consumer(
            self.settings.kafka,
            f"{self.settings.consumer_group}.monitor",  # never commits: no group is created
            {"enable.auto.commit": False, "fetch.wait.max.ms": 100},
        )
        start_ms = int((self.clock() - self.lookback_s) * 1000)
        wanted = []
        try:
            metadata = consumer.list_topics(timeout=10)
        except KafkaException as exc:
            raise ServiceUnavailableError(f"Kafka did not answer: {exc}") from exc
        for topic in self.topics:
            if topic not in metadata.topics:
                raise ConfigError(f"topic '{topic}' does not exist; create it with `fraud topics`")
            wanted += [
                TopicPartition(topic, p, start_ms) for p in metadata.topics[topic].partitions
            ]
        starts = consumer.offsets_for_times(wanted, timeout=10)
        for tp in starts:
            if tp.offset < 0:  # nothing since the lookback began: start at the end
                _, tp.offset = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            self.positions[(tp.topic, tp.partition)] = tp.offset
        consumer.assign(starts)
        return consumer

    def consume(self, max_messages: int = 5000, timeout_s: float = 0.5) -> int:
        """Read what is there (up to `max_messages`); returns how many records were read."""
        messages = self.consumer.consume(max_messages, timeout=timeout_s)
        for message in messages:
            if message.error() is not None:
                continue
            topic = message.topic() or ""
            self.positions[(topic, message.partition() or 0)] = (message.offset() or 0) + 1
            try:
                record = self._validators[topic](orjson.loads(message.value() or b""))
                self.topics[topic][1](record)
            except (orjson.JSONDecodeError, FraudScorerError, ValueError) as exc:
                self.metrics.records.labels(topic, "invalid").inc()
                log.debug("skipping a record of %s: %s", topic, exc)
            else:
                self.metrics.records.labels(topic, "read").inc()
        return len(messages)

    def end_offsets(self) -> dict[tuple[str, int], int]:
        """Where each partition ends now: `read_until` reads up to here."""
        ends = {}
        for tp in self.consumer.assignment():
            _, ends[(tp.topic, tp.partition)] = self.consumer.get_watermark_offsets(
                tp, timeout=10, cached=False
            )
        return ends

    def read_until(self, ends: dict[tuple[str, int], int], timeout_s: float = 60.0) -> None:
        """Consume until every partition reached `ends` (a one-shot report's snapshot)."""
        deadline = time.monotonic() + timeout_s
        while any(self.positions.get(tp, 0) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(
                    f"could not read decisions and feedback to their end within {timeout_s:.0f} s"
                )
            if not self.consume(timeout_s=0.2):
                # Transaction markers take offsets but are never delivered: ask where we are.
                for tp in self.consumer.position(self.consumer.assignment()):
                    if tp.offset >= 0:
                        key = (tp.topic, tp.partition)
                        self.positions[key] = max(self.positions.get(key, 0), tp.offset)

    def refresh(self) -> list[VersionHealth]:
        """Load missing references, drop what left the window, update the gauges."""
        now = self.clock()
        for version, retry_at in list(self._retry_at.items()):
            if now >= retry_at:
                del self._retry_at[version]
                self.monitor.forget_reference(version)
        for name, version in self.monitor.wanted_references():
            reference = None
            try:
                reference = self.references(name, version)
            except Exception as exc:  # noqa: BLE001 - a missing or unreadable reference is not fatal
                log.warning("no drift reference for %s version %s: %s", name, version, exc)
            if reference is None:
                self._retry_at[version] = now + self.reference_retry_s
            self.monitor.set_reference(version, reference)
        self.monitor.expire(now)
        health = self.monitor.snapshot()
        join = self.monitor.join
        self.metrics.update(health, len(join.pending), join.unmatched_labels, now)
        return health

    def run(self, stop: threading.Event, interval_s: float) -> None:
        next_refresh = 0.0
        while not stop.is_set():
            try:
                self.consume()
                if time.monotonic() >= next_refresh:
                    self.refresh()
                    next_refresh = time.monotonic() + interval_s
            except KafkaException as exc:
                log.warning("monitor read failed: %s", exc)
                stop.wait(1.0)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
