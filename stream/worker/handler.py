"""One micro-batch, start to finish: admit, aggregate, score, write. Independent of Faust.

`handle` never raises: a failure inside a batch turns its events into dead-letter records
(reason `processing_error`) so the batch's offsets can be acknowledged without losing anything.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from fraud.errors import ValidationError
from fraud.settings import Settings
from schemas import validator
from stream.edge import Admitted, DeadLetter, PanKey, Source, admit, dead_letter
from stream.features import FeatureStore
from stream.scoring import ScoredBatch, score_batch
from stream.worker.metrics import ScorerMetrics
from stream.worker.models import ModelHolder
from stream.worker.output import BatchProducer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawMessage:
    value: bytes | None
    source: Source


@dataclass
class PreparedBatch:
    """A scored batch and its output records, not yet on the broker."""

    scored: ScoredBatch
    dead: list[DeadLetter]
    records: list[tuple[str, bytes | None, bytes]]


class BatchHandler:
    def __init__(
        self,
        settings: Settings,
        store: FeatureStore,
        models: ModelHolder,
        producer: BatchProducer,
        metrics: ScorerMetrics,
    ) -> None:
        self.settings = settings
        self.store = store
        self.models = models
        self.producer = producer
        self.metrics = metrics
        self._validate_tx = validator("transaction")
        self._validate_feedback = validator("feedback")
        self._pan_key = PanKey.from_settings(settings)
        self._redis_down_until = 0.0
        # Events decided with default aggregates, oldest first, waiting for Redis to return.
        self._backlog: deque[dict[str, Any]] = deque()

    # -- transactions -------------------------------------------------------------------

    def admit(self, raw: bytes | None, source: Source) -> Admitted | DeadLetter:
        return admit(raw, source, self._validate_tx, self._pan_key)

    def features(
        self, events: list[dict[str, Any]]
    ) -> tuple[list[dict[str, float | None]], list[bool]]:
        """Aggregates from Redis, or defaults (degraded) while Redis is unreachable or failing.

        Any Redis error degrades, not only a lost connection: a full Redis (OOM), a read-only
        replica after a failover or a busy script answer with an error reply, and a decision
        with default aggregates beats a dead letter. A failed write script leaves no partial
        state: its first write is the one refused.
        """
        import redis

        if time.monotonic() >= self._redis_down_until:
            try:
                self._backfill()
                return self.store.process_batch(events), [False] * len(events)
            except redis.RedisError as exc:
                self.metrics.redis_errors.inc()
                self._redis_down_until = time.monotonic() + self.settings.redis_retry_s
                log.warning("redis failed (%r); deciding with default aggregates", exc)
        self.metrics.degraded.inc(len(events))
        self._keep_for_backfill(events)
        return [self.store.default_features(event) for event in events], [True] * len(events)

    def _keep_for_backfill(self, events: list[dict[str, Any]]) -> None:
        self._backlog.extend(events)
        overflow = len(self._backlog) - self.settings.redis_backlog_max
        if overflow > 0:
            for _ in range(overflow):
                self._backlog.popleft()
            self.metrics.backfill_dropped.inc(overflow)

    def _backfill(self, chunk: int = 1000) -> None:
        """Fold the events decided during an outage into the aggregates, oldest first, before
        the current batch (so a card's history stays in time order). Their decisions stand;
        the store only records them (idempotent per transaction id, so a chunk retried after a
        failure is not counted twice)."""
        if self._backlog:
            log.info("redis is back; adding %d transactions decided without it", len(self._backlog))
        while self._backlog:
            events = [self._backlog[i] for i in range(min(chunk, len(self._backlog)))]
            self.store.process_batch(events)
            for _ in events:
                self._backlog.popleft()
            self.metrics.backfilled.inc(len(events))

    def score(self, admitted: list[Admitted]) -> ScoredBatch:
        model = self.models.current  # one version for the whole batch
        if model is None:
            raise RuntimeError("no model loaded")
        events = [item.event for item in admitted]
        feature_rows, degraded = self.features(events)
        now = datetime.now(UTC)
        arrived = [
            now.timestamp() if item.source.timestamp is None else item.source.timestamp
            for item in admitted
        ]
        return score_batch(model, events, feature_rows, degraded, now, arrived)

    def prepare(self, messages: Sequence[RawMessage]) -> PreparedBatch:
        """Admit, aggregate and score a batch: everything but the output. Never raises: a
        failure while scoring parks the batch's events on the dead-letter topic instead."""
        self.metrics.batch_size.observe(len(messages))
        admitted: list[Admitted] = []
        dead: list[DeadLetter] = []
        for message in messages:
            result = self.admit(message.value, message.source)
            if isinstance(result, Admitted):
                admitted.append(result)
                if result.tokenized_fields:
                    self.metrics.pan_tokenized.inc(len(result.tokenized_fields))
            else:
                dead.append(result)
        scored = ScoredBatch([], [])
        if admitted:
            try:
                scored = self.score(admitted)
            except Exception as exc:  # a bug must not lose the batch: park it on the DLQ
                log.exception("scoring failed for a batch of %d", len(admitted))
                for item in admitted:
                    raw = orjson.dumps(item.event)
                    dead.append(dead_letter("processing_error", raw, item.source, repr(exc)))
        return PreparedBatch(scored, dead, self._records(scored, dead))

    async def publish(self, batch: PreparedBatch) -> None:
        """Return once every output of the batch is on the broker; count it then."""
        await self.producer.deliver(batch.records)
        self._observe(batch.scored, batch.dead)

    async def handle(self, messages: Sequence[RawMessage]) -> ScoredBatch:
        """One batch start to finish: `prepare`, then `publish`."""
        batch = self.prepare(messages)
        await self.publish(batch)
        return batch.scored

    def _records(
        self, scored: ScoredBatch, dead: list[DeadLetter]
    ) -> list[tuple[str, bytes | None, bytes]]:
        topics = self.settings.topics
        records: list[tuple[str, bytes | None, bytes]] = []
        for decision in scored.decisions:
            records.append((topics.decisions, decision["card_id"].encode(), orjson.dumps(decision)))
        for alert in scored.alerts:
            records.append((topics.alerts, alert["card_id"].encode(), orjson.dumps(alert)))
        for item in dead:
            records.append((topics.dead_letter, None, orjson.dumps(item.record)))
        return records

    def _observe(self, scored: ScoredBatch, dead: list[DeadLetter]) -> None:
        m = self.metrics
        m.transactions.labels("decided").inc(len(scored.decisions))
        m.transactions.labels("dead_lettered").inc(len(dead))
        for reason, count in Counter(item.reason for item in dead).items():
            m.dead_letters.labels(reason).inc(count)
        for tier, count in Counter(d["decision"] for d in scored.decisions).items():
            m.decisions.labels(tier).inc(count)
        for decision in scored.decisions:
            m.score.observe(decision["score"])
            m.latency.observe(decision["latency_ms"] / 1000)

    # -- feedback -----------------------------------------------------------------------

    async def handle_feedback(self, messages: Sequence[RawMessage]) -> int:
        """Confirmed labels update the terminal risk aggregates; bad records are dead-lettered."""
        import redis

        labels: list[dict[str, Any]] = []
        dead: list[DeadLetter] = []
        for message in messages:
            raw = message.value or b""
            try:
                labels.append(self._validate_feedback(orjson.loads(raw)))
            except orjson.JSONDecodeError as exc:
                dead.append(dead_letter("invalid_json", raw, message.source, str(exc)))
            except ValidationError as exc:
                dead.append(
                    dead_letter("schema", raw, message.source, str(exc), exc.field, exc.rule)
                )
        applied = 0
        if labels:
            try:
                applied = self.store.apply_labels(labels)
            except redis.RedisError as exc:
                # Labels are also kept on the feedback topic for retraining; the online
                # terminal aggregates miss them until Redis is back.
                self.metrics.redis_errors.inc()
                log.warning("redis failed for %d labels: %r", len(labels), exc)
        if dead:
            await self.producer.deliver(
                [(self.settings.topics.dead_letter, None, orjson.dumps(d.record)) for d in dead]
            )
            for item in dead:
                self.metrics.dead_letters.labels(item.reason).inc()
        return applied
