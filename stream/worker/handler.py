"""One micro-batch, start to finish: admit, aggregate, score, write. Independent of Faust.

Nothing an input holds can stop the batch or take its batch-mates with it:
- every event is admitted on its own (`stream.edge`): a bad one becomes a dead letter;
- event times are checked against the stream's clock (`stream.edge.times`);
- aggregation and scoring run on the whole batch, and when that raises, the batch is split in
  halves until the failing events are alone: each of them is dead-lettered (`processing_error`,
  with the exception's type) and the others are decided;
- a transaction id reused by other content is refused (`duplicate_id`; the first decision
  stands), a true redelivery gets its recorded features back;
- `prepare` never raises: an unexpected failure of the batch itself is logged, counted
  (`fraud_batch_failures_total`, alerted on) and the batch's inputs are dead-lettered.

The worker's route calls `begin` rather than `prepare`: the batch is admitted at once, its
aggregates are read and written on the store lane (one thread: batches reach the store in the
order they were admitted) and it is scored when they are back. So while one batch waits for the
Redis scripts, the event loop's thread admits the next batch or scores and encodes the previous
one, instead of waiting too.

Feedback gets the same treatment, record by record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

from fraud.errors import ValidationError
from fraud.settings import Settings
from schemas import validator
from stream.edge import (
    Admitted,
    DeadLetter,
    EdgeLimits,
    EventTimeGuard,
    PanKey,
    Source,
    Stamped,
    admit,
    dead_letter,
    instant_us,
    walk,
)
from stream.features import FeatureStore, FloatArray
from stream.scoring import ScoredBatch, score_batch
from stream.worker.metrics import ScorerMetrics
from stream.worker.models import ModelHolder
from stream.worker.output import BatchProducer
from stream.worker.store_process import StoreProcess

log = logging.getLogger(__name__)

Record = tuple[str, bytes | None, bytes]
T = TypeVar("T")
# A batch's aggregates: the feature matrix (a row per event, FEATURE_NAMES columns), which
# rows were decided degraded, and the rows whose transaction id other content had taken.
Aggregates = tuple[FloatArray, list[bool], list[int]]


@dataclass(frozen=True)
class RawMessage:
    value: bytes | None
    source: Source


@dataclass
class PreparedBatch:
    """A scored batch and its output records, not yet on the broker."""

    scored: ScoredBatch
    dead: list[DeadLetter]
    records: list[Record]


class BatchHandler:
    def __init__(
        self,
        settings: Settings,
        store: FeatureStore | StoreProcess,
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
        self.limits = EdgeLimits(
            max_bytes=settings.edge_max_bytes,
            max_depth=settings.edge_max_depth,
            max_fields=settings.edge_max_fields,
            max_string=settings.edge_max_string,
        )
        self.event_times = EventTimeGuard(max_lead_us=int(settings.event_time_max_lead_s * 1e6))
        self._redis_down_until = 0.0
        # Events decided with default aggregates, oldest first, waiting for Redis to return.
        self._backlog: deque[dict[str, Any]] = deque()
        # The store lane: every batch's aggregation, in the order `begin` admitted the batches
        # (the store, the degraded mode and the backfill are only ever touched from it there).
        self._lane = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-lane")
        self._lane_tail: Future[Any] | None = None  # the last work given to the lane

    # Below this many events, a batch that finds the store lane idle is aggregated at once on
    # the caller's thread: a small batch means the worker keeps up, there is nothing to overlap
    # its Redis round trips with, and the hop to the lane's thread would only add latency.
    lane_min_events = 64

    def _on_lane(self, size: int, work: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """`work` on the store lane, after everything given to it before (or at once, see
        `lane_min_events`); its result or exception in the returned future."""
        tail = self._lane_tail
        if size < self.lane_min_events and (tail is None or tail.done()):
            done: Future[T] = Future()
            try:
                done.set_result(work(*args, **kwargs))
            except Exception as exc:  # noqa: BLE001 - handed over, as the lane would
                done.set_exception(exc)
            return done
        self._lane_tail = self._lane.submit(work, *args, **kwargs)
        return self._lane_tail

    # -- transactions -------------------------------------------------------------------

    def admit(self, raw: bytes | None, source: Source) -> Admitted | DeadLetter:
        """One input through the edge; never raises."""
        try:
            return admit(raw, source, self._validate_tx, self._pan_key, self.limits)
        except Exception as exc:  # the edge's own bug: park the input, keep the batch going
            log.exception("admission failed for %s[%d]@%d", *_where(source))
            return self._processing_error(raw or b"", source, exc)

    def _processing_error(self, raw: bytes, source: Source, exc: BaseException) -> DeadLetter:
        return dead_letter(
            "processing_error",
            raw,
            source,
            f"{type(exc).__name__}: {exc}",
            key=self._pan_key.secret,
            exception=type(exc).__name__,
        )

    def features(self, events: list[dict[str, Any]], *, write: bool = True) -> Aggregates:
        """Aggregates from Redis, or defaults (degraded) while Redis is unreachable or failing;
        also the rows whose transaction id was taken by other content.

        Any Redis error degrades, not only a lost connection: a full Redis (OOM), a read-only
        replica after a failover or a busy script answer with an error reply, and a decision
        with default aggregates beats a dead letter. A failed card write script leaves no
        partial card state (its first write is the one refused); terminal members a failed
        round did add are taken off the batch's counts when it comes again (backfill).
        """
        import redis

        if time.monotonic() >= self._redis_down_until:
            try:
                if write:
                    self._backfill()
                result = self.store.process(events, write=write)
                return result.matrix, [False] * len(events), result.conflicts
            except redis.RedisError as exc:
                self.metrics.redis_errors.inc()
                self._redis_down_until = time.monotonic() + self.settings.redis_retry_s
                log.warning("redis failed (%r); deciding with default aggregates", exc)
        self.metrics.degraded.inc(len(events))
        if write:
            self._keep_for_backfill(events)
        return self.store.default_matrix(events), [True] * len(events), []

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
        failure is not counted twice). Every event here was admitted by the edge, so only Redis
        can fail a chunk; should anything else fail, the chunk is dropped and counted rather
        than block every later batch."""
        import redis

        if self._backlog:
            log.info("redis is back; adding %d transactions decided without it", len(self._backlog))
        while self._backlog:
            events = [self._backlog[i] for i in range(min(chunk, len(self._backlog)))]
            try:
                self.store.process(events)
            except redis.RedisError:
                raise
            except Exception:
                log.exception("backfill of %d transactions failed; they are dropped", len(events))
                self.metrics.backfill_dropped.inc(len(events))
            else:
                self.metrics.backfilled.inc(len(events))
            for _ in events:
                self._backlog.popleft()

    def score(self, admitted: list[Admitted], *, write: bool = True) -> ScoredBatch:
        """Aggregate and score admitted events (raises on failure; see `_score_isolated`)."""
        batch, _conflicts = self._score(admitted, write=write)
        return batch

    async def score_read_only(self, admitted: list[Admitted]) -> ScoredBatch:
        """`score` without writing anything (`POST /predict`), aggregated on the store lane."""
        looking = self._on_lane(len(admitted), self._aggregate, admitted, write=False)
        scored, _conflicts = self._score_aggregated(admitted, await asyncio.wrap_future(looking))
        return scored

    def _score(
        self, admitted: list[Admitted], *, write: bool = True
    ) -> tuple[ScoredBatch, list[int]]:
        return self._score_aggregated(admitted, self._aggregate(admitted, write=write))

    def _aggregate(self, admitted: list[Admitted], *, write: bool = True) -> Aggregates:
        """The batch's aggregates (`features`); without a model the store is left alone."""
        if self.models.current is None:
            raise RuntimeError("no model loaded")
        return self.features([item.event for item in admitted], write=write)

    def _score_aggregated(
        self, admitted: list[Admitted], aggregates: Aggregates
    ) -> tuple[ScoredBatch, list[int]]:
        model = self.models.current  # one version for the whole batch
        if model is None:
            raise RuntimeError("no model loaded")
        events = [item.event for item in admitted]
        features, degraded, conflicts = aggregates
        now = datetime.now(UTC)
        arrived = [
            now.timestamp() if item.source.timestamp is None else item.source.timestamp
            for item in admitted
        ]
        if conflicts:
            keep = sorted(set(range(len(admitted))) - set(conflicts))
            events = [events[i] for i in keep]
            features = features[keep]
            degraded = [degraded[i] for i in keep]
            arrived = [arrived[i] for i in keep]
        scored = score_batch(model, events, features, degraded, now, arrived)
        if scored.untrusted:
            self.metrics.untrusted_scores.inc(scored.untrusted)
        return scored, conflicts

    def _score_isolated(self, admitted: list[Admitted]) -> tuple[ScoredBatch, list[DeadLetter]]:
        """Score the batch; when that raises, split it until each failing event is alone and
        dead-letter those events, so that their batch-mates are still decided (in order)."""
        try:
            scored, conflicts = self._score(admitted)
        except Exception as exc:  # noqa: BLE001 - isolated below, one event at a time
            return self._isolate(admitted, exc)
        return scored, self._duplicates(admitted, conflicts)

    def _isolate(
        self, admitted: list[Admitted], exc: Exception
    ) -> tuple[ScoredBatch, list[DeadLetter]]:
        """`_score_isolated` of a batch whose whole failed with `exc`: halves, down to the
        failing events alone."""
        if len(admitted) == 1:
            item = admitted[0]
            log.warning("an event failed aggregation or scoring: %r", exc)
            return ScoredBatch([], []), [self._processing_error(_raw(item), item.source, exc)]
        middle = len(admitted) // 2
        first, first_dead = self._score_isolated(admitted[:middle])
        second, second_dead = self._score_isolated(admitted[middle:])
        merged = ScoredBatch(
            first.decisions + second.decisions,
            first.alerts + second.alerts,
            first.untrusted + second.untrusted,
        )
        return merged, first_dead + second_dead

    def _duplicates(self, admitted: list[Admitted], conflicts: list[int]) -> list[DeadLetter]:
        """Dead letters of the rows whose transaction id was taken by other content."""
        return [
            dead_letter(
                "duplicate_id",
                _raw(admitted[row]),
                admitted[row].source,
                f"transaction id {admitted[row].event['transaction_id']!r} was already decided "
                "with other content; the first decision stands",
                "transaction_id",
                "unique",
                key=self._pan_key.secret,
            )
            for row in conflicts
        ]

    def prepare(self, messages: Sequence[RawMessage]) -> PreparedBatch:
        """Admit, aggregate and score a batch: everything but the output. Never raises."""
        try:
            return self._prepare(messages)
        except Exception:  # a bug at batch level: park every input, count it, go on
            log.exception(
                "batch of %d failed; its inputs go to the dead-letter topic", len(messages)
            )
            self.metrics.batch_failures.inc()
            dead = []
            for message in messages:
                try:
                    dead.append(
                        dead_letter(
                            "processing_error",
                            message.value or b"",
                            message.source,
                            "the batch failed; see the worker log",
                            key=self._pan_key.secret,
                        )
                    )
                except Exception:
                    log.exception("could not dead-letter an input of a failed batch")
            empty = ScoredBatch([], [])
            return PreparedBatch(empty, dead, self._records(empty, dead))

    def _prepare(self, messages: Sequence[RawMessage]) -> PreparedBatch:
        admitted, dead = self._admit_batch(messages)
        scored = ScoredBatch([], [])
        if admitted:
            scored, failed = self._score_isolated(admitted)
            dead.extend(failed)
        return PreparedBatch(scored, dead, self._records(scored, dead))

    def begin(self, messages: Sequence[RawMessage]) -> Awaitable[PreparedBatch]:
        """`prepare` in stages: the batch is admitted now, on the caller's thread; its
        aggregates are computed on the store lane (batches in the order they began); it is
        scored and encoded when the returned awaitable runs, on the caller's thread again.
        Neither this nor the awaitable raises: as in `prepare`, a failed event is
        dead-lettered alone and a failure of the whole batch dead-letters its inputs."""
        try:
            admitted, dead = self._admit_batch(messages)
            aggregates = None
            if admitted:
                aggregating = self._on_lane(len(admitted), self._aggregate, admitted)
                aggregates = asyncio.wrap_future(aggregating)
        except Exception:  # a bug at batch level: `prepare` dead-letters the inputs
            log.exception("admitting a batch of %d failed", len(messages))
            return _ready(self.prepare(messages))
        return self._finish(messages, admitted, dead, aggregates)

    async def _finish(
        self,
        messages: Sequence[RawMessage],
        admitted: list[Admitted],
        dead: list[DeadLetter],
        aggregates: Awaitable[Aggregates] | None,
    ) -> PreparedBatch:
        try:
            scored = ScoredBatch([], [])
            if aggregates is not None:
                try:
                    scored, conflicts = self._score_aggregated(admitted, await aggregates)
                    failed = self._duplicates(admitted, conflicts)
                except Exception as exc:  # noqa: BLE001 - isolated on the lane, as in prepare
                    isolated = self._on_lane(len(admitted), self._isolate, admitted, exc)
                    scored, failed = await asyncio.wrap_future(isolated)
                dead.extend(failed)
            return PreparedBatch(scored, dead, self._records(scored, dead))
        except Exception:  # a bug at batch level: `prepare` dead-letters the inputs
            log.exception("finishing a batch of %d failed", len(messages))
            return self.prepare(messages)

    def _admit_batch(
        self, messages: Sequence[RawMessage]
    ) -> tuple[list[Admitted], list[DeadLetter]]:
        """Every input admitted or dead-lettered, then the event times checked."""
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
        admitted, late = self._check_event_times(admitted)
        dead.extend(late)
        return admitted, dead

    def _check_event_times(
        self, admitted: list[Admitted]
    ) -> tuple[list[Admitted], list[DeadLetter]]:
        stamped = [
            Stamped(
                (item.source.topic, item.source.partition),
                item.event_time_us,
                None if item.source.timestamp is None else int(item.source.timestamp * 1e6),
            )
            for item in admitted
        ]
        verdicts = self.event_times.check(stamped, int(time.time() * 1e6))
        kept, dead = [], []
        for item, verdict in zip(admitted, verdicts, strict=True):
            if verdict is None:
                kept.append(item)
            else:
                dead.append(
                    dead_letter(
                        "event_time",
                        _raw(item),
                        item.source,
                        verdict,
                        "timestamp",
                        "plausible",
                        key=self._pan_key.secret,
                    )
                )
        return kept, dead

    async def publish(self, batch: PreparedBatch) -> None:
        """Return once every output of the batch is on the broker; count it then."""
        await self.producer.deliver(batch.records)
        self._observe(batch.scored, batch.dead)

    async def handle(self, messages: Sequence[RawMessage]) -> ScoredBatch:
        """One batch start to finish, as the worker runs it: `begin`, then `publish`."""
        batch = await self.begin(messages)
        await self.publish(batch)
        return batch.scored

    def _records(self, scored: ScoredBatch, dead: list[DeadLetter]) -> list[Record]:
        topics = self.settings.topics
        records: list[Record] = []
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
            if decision["score"] is not None:
                m.score.observe(decision["score"])
            m.latency.observe(decision["latency_ms"] / 1000)

    # -- feedback -----------------------------------------------------------------------

    async def handle_feedback(self, messages: Sequence[RawMessage]) -> int:
        """Confirmed labels update the terminal risk aggregates; every bad record is
        dead-lettered on its own and the good ones of its batch still apply."""
        import redis

        labels: list[tuple[dict[str, Any], RawMessage]] = []
        dead: list[DeadLetter] = []
        for message in messages:
            checked = self._check_label(message)
            if isinstance(checked, DeadLetter):
                dead.append(checked)
            else:
                labels.append((checked, message))
        applied = 0
        if labels:
            try:
                # On the store lane, as the transactions' aggregation.
                applying = self._on_lane(
                    len(labels), self.store.apply_labels_checked, [label for label, _ in labels]
                )
                result = await asyncio.wrap_future(applying)
                applied = result.applied
                early = set(result.dated_before_transaction)
                for label, message in labels:
                    if label["transaction_id"] in early:
                        dead.append(
                            self._feedback_dead(
                                "label_time",
                                message,
                                "labelled_at is before the transaction it judges",
                                "labelled_at",
                            )
                        )
            except redis.RedisError as exc:
                # Labels are also kept on the feedback topic for retraining; the online
                # terminal aggregates miss them until Redis is back.
                self.metrics.redis_errors.inc()
                log.warning("redis failed for %d labels: %r", len(labels), exc)
            except Exception as exc:  # a bug: the labels stay on the topic for retraining
                log.exception("applying %d labels failed", len(labels))
                self.metrics.batch_failures.inc()
                dead.extend(
                    self._processing_error(message.value or b"", message.source, exc)
                    for _, message in labels
                )
        if dead:
            await self.producer.deliver(
                [(self.settings.topics.dead_letter, None, orjson.dumps(d.record)) for d in dead]
            )
            for item in dead:
                self.metrics.dead_letters.labels(item.reason).inc()
        return applied

    def _check_label(self, message: RawMessage) -> dict[str, Any] | DeadLetter:
        """A feedback record that passes the edge, its contract and the time and source rules,
        or its dead letter."""
        raw = message.value or b""
        try:
            if len(raw) > self.limits.max_bytes:
                return self._feedback_dead("too_large", message, f"{len(raw)} bytes", None)
            record = orjson.loads(raw)
            if not isinstance(record, dict):
                return self._feedback_dead("schema", message, "not a JSON object", "<record>")
            shape = walk(record, self.limits)
            if shape.broken is not None:
                return self._feedback_dead(shape.broken[0], message, shape.broken[1], None)
            # A card number in a note is never stored: only the id, verdict and time are.
            label: dict[str, Any] = self._validate_feedback(record)
        except orjson.JSONDecodeError as exc:
            return self._feedback_dead("invalid_json", message, f"not valid JSON: {exc}", None)
        except ValidationError as exc:
            return dead_letter(
                "schema",
                raw,
                message.source,
                str(exc),
                exc.field,
                exc.rule,
                key=self._pan_key.secret,
            )
        except Exception as exc:  # noqa: BLE001 - one record's bug never stops the others
            return self._processing_error(raw, message.source, exc)
        labelled_at = instant_us(label["labelled_at"])
        if labelled_at is None:
            return self._feedback_dead(
                "schema", message, "labelled_at is not a real instant", "labelled_at"
            )
        lead_us = int(self.settings.event_time_max_lead_s * 1e6)
        if labelled_at > int(time.time() * 1e6) + lead_us:
            return self._feedback_dead(
                "label_time", message, "labelled_at is in the future", "labelled_at"
            )
        if (
            label["source"] == "chargeback"
            and label["analyst_id"] not in self.settings.chargeback_analysts
        ):
            return self._feedback_dead(
                "label_source",
                message,
                f"chargebacks come only from {self.settings.chargeback_analysts}",
                "analyst_id",
            )
        return label

    def _feedback_dead(
        self, reason: str, message: RawMessage, error: str, field: str | None
    ) -> DeadLetter:
        return dead_letter(
            reason,
            message.value or b"",
            message.source,
            error,
            field,
            reason,
            key=self._pan_key.secret,
        )


async def _ready(batch: PreparedBatch) -> PreparedBatch:
    return batch


def _where(source: Source) -> tuple[str, int, int]:
    return source.topic, source.partition, source.offset


def _raw(item: Admitted) -> bytes:
    """An admitted event as bytes for its dead letter (card numbers already tokenised)."""
    try:
        return orjson.dumps(item.event)
    except TypeError:  # deeper than the serializer goes: the edge's limits prevent it
        return b"<unserializable>"
