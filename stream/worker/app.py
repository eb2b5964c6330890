"""The Faust worker: thin agents around `BatchHandler`, plus the HTTP views.

Agents take micro-batches (`noack_take(n, within)`) and acknowledge a batch's events
themselves, only once every output of the batch is on the broker (`BatchProducer.deliver`), so
committed offsets never run ahead of decisions. The scoring agent pipelines: batch N+1 is
admitted, aggregated and scored while batch N's outputs are still being flushed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import faust
import orjson
from confluent_kafka import KafkaException
from faust.types import StreamT
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fraud.settings import Settings
from stream.edge import Admitted, Source
from stream.kafka_io import faust_credentials
from stream.worker.handler import BatchHandler, PreparedBatch, RawMessage
from stream.worker.metrics import ScorerMetrics
from stream.worker.models import ModelHolder
from stream.worker.output import BatchProducer

log = logging.getLogger(__name__)


@dataclass
class Worker:
    """Everything one worker process holds; built once in `main` and passed to the app."""

    settings: Settings
    metrics: ScorerMetrics
    models: ModelHolder
    producer: BatchProducer
    handler: BatchHandler
    _kafka_ok_at: float = 0.0

    async def kafka_connected(self) -> bool:
        """Broker metadata answered within the last few seconds (cached: health is polled)."""
        if time.monotonic() - self._kafka_ok_at < 2.0:
            return True
        try:
            await asyncio.to_thread(self.producer.producer.list_topics, None, 1.0)
        except KafkaException:
            return False
        self._kafka_ok_at = time.monotonic()
        return True


def build_worker(settings: Settings, metrics: ScorerMetrics | None = None) -> Worker:
    from stream.features import RedisFeatureStore
    from stream.redis_io import connect_redis

    metrics = metrics or ScorerMetrics()
    models = ModelHolder(settings, metrics)
    producer = BatchProducer(settings.kafka, metrics)
    client = connect_redis(
        settings, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=0
    )
    handler = BatchHandler(
        settings,
        RedisFeatureStore(
            client, settings.redis_prefix, label_delay=timedelta(days=settings.label_delay_days)
        ),
        models,
        producer,
        metrics,
    )
    return Worker(settings, metrics, models, producer, handler)


def _messages(events: Any) -> list[RawMessage]:
    return [
        RawMessage(
            e.value,
            Source(e.message.topic, e.message.partition, e.message.offset, e.message.timestamp),
        )
        for e in events
    ]


async def _to_the_end(batch: Awaitable[Any]) -> None:
    """Run a batch's delivery to completion even when the worker is stopping (SIGTERM), so that
    a batch is never cut between a failed delivery and its re-send."""
    task = asyncio.ensure_future(batch)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})  # unlike awaiting the task, a second cancel leaves it running
        raise


async def score_pipelined(stream: faust.Stream, handler: BatchHandler, settings: Settings) -> None:
    """Score micro-batches with one batch's delivery overlapping the next batch's scoring.

    At most one batch is in flight, and its delivery is awaited before the next batch is
    produced, so outputs keep the input order. A batch's events are acknowledged after its
    delivery: a crash before that leaves their offsets uncommitted and they are read again
    (at least once; the feature store hands back recorded features for a repeated id).
    """
    in_flight: asyncio.Future[None] | None = None

    async def publish_then_ack(batch: PreparedBatch, events: list[Any]) -> None:
        await handler.publish(batch)
        for event in events:
            await stream.ack(event)

    try:
        async for events in stream.noack_take(settings.batch_size, within=settings.batch_within_s):
            batch = handler.prepare(_messages(events))
            if in_flight is not None:
                await _to_the_end(in_flight)
            in_flight = asyncio.ensure_future(publish_then_ack(batch, list(events)))
    finally:
        if in_flight is not None:
            await _to_the_end(in_flight)


def create_app(worker: Worker) -> faust.App:
    settings = worker.settings
    app = faust.App(
        settings.consumer_group,
        broker=f"kafka://{settings.kafka_bootstrap_servers}",
        broker_credentials=faust_credentials(settings.kafka),
        key_serializer="raw",
        value_serializer="raw",
        store="memory://",
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        topic_disable_leader=True,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        datadir=str(
            settings.state_dir / "faust" / f"{settings.consumer_group}-{settings.web_port}"
        ),
    )
    transactions = app.topic(
        settings.topics.transactions, key_serializer="raw", value_serializer="raw"
    )
    feedback = app.topic(settings.topics.feedback, key_serializer="raw", value_serializer="raw")

    # noack_take and take_events live on faust.Stream; the StreamT the agent decorator types
    # its argument as does not declare them. (Feedback is light: take_events acknowledges a
    # batch after the loop body, which returns once its dead letters are delivered.)
    @app.agent(transactions, name="score-transactions")
    async def score_transactions(stream: StreamT[Any]) -> None:
        await score_pipelined(cast(faust.Stream, stream), worker.handler, settings)

    @app.agent(feedback, name="apply-feedback")
    async def apply_feedback(stream: StreamT[Any]) -> None:
        async for events in cast(faust.Stream, stream).take_events(settings.batch_size, within=0.5):
            await _to_the_end(worker.handler.handle_feedback(_messages(events)))

    @app.timer(interval=settings.model_poll_interval_s)
    async def poll_model() -> None:
        await worker.models.refresh()
        # Readiness is exported on every poll, not only when someone asks /health.
        ready = worker.models.current is not None and await worker.kafka_connected()
        worker.metrics.ready.set(1 if ready else 0)

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            model = worker.models.current
            kafka_ok = await worker.kafka_connected()
            ready = model is not None and kafka_ok
            worker.metrics.ready.set(1 if ready else 0)
            body = {
                "ready": ready,
                "kafka": kafka_ok,
                "model": None if model is None else {"name": model.name, "version": model.version},
            }
            return self.json(body, status=200 if ready else 503)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            # aiohttp refuses a charset inside content_type; Prometheus text is UTF-8 anyway.
            content_type = CONTENT_TYPE_LATEST.split("; charset")[0]
            return self.bytes(generate_latest(worker.metrics.registry), content_type=content_type)

    @app.page("/predict")
    class Predict(View):
        """Score one transaction inline (same path as the stream); not published to `decisions`."""

        async def post(self, request: Request) -> Response:
            raw = await self.read_request_content(request)
            result = worker.handler.admit(raw, Source("http", 0, 0, time.time()))
            if not isinstance(result, Admitted):
                return self.json(
                    {
                        "error": result.record["error"],
                        "field": result.record["field"],
                        "rule": result.record["rule"],
                    },
                    status=400,
                )
            if worker.models.current is None:
                return self.json({"error": "no model loaded"}, status=503)
            scored = worker.handler.score([result])
            return self.bytes(orjson.dumps(scored.decisions[0]), content_type="application/json")

    return app
