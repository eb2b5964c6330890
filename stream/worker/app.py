"""The Faust worker: `BatchHandler` fed whole fetched batches, plus the feedback agent, the
model poll and the HTTP views.

Transactions bypass Faust's per-event stream: each fetched batch goes to a `PipelinedRoute`
(stream/worker/batches.py, route.py), which admits batch N+1 while batch N waits for its
aggregates on the store lane (`BatchHandler.begin`) and scores it while batch N's outputs flush,
and acknowledges a batch's offsets only once every output of it is on the broker
(`BatchProducer.deliver`), so committed offsets never run ahead of decisions. Faust keeps the
group, rebalances, commits, timers, web views and the feedback agent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, cast

import faust
import orjson
from aiohttp import web
from confluent_kafka import KafkaException
from faust.types import StreamT
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fraud.settings import Settings
from stream.edge import Admitted, Source
from stream.kafka_io import faust_credentials
from stream.worker.batches import BatchApp, FetchedBatch
from stream.worker.handler import BatchHandler, PreparedBatch, RawMessage
from stream.worker.metrics import ScorerMetrics
from stream.worker.models import ModelHolder
from stream.worker.output import BatchProducer
from stream.worker.route import PipelinedRoute
from stream.worker.store_process import StoreProcess, redis_feature_store

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
    metrics = metrics or ScorerMetrics()
    models = ModelHolder(settings, metrics)
    producer = BatchProducer(settings.kafka, metrics, dead_letter_topic=settings.topics.dead_letter)
    local = redis_feature_store(settings)
    store = StoreProcess(settings, local) if settings.store_process else local
    handler = BatchHandler(settings, store, models, producer, metrics)
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


def _records(batch: FetchedBatch) -> list[RawMessage]:
    """aiokafka records (timestamps in milliseconds) as the handler's messages."""
    return [
        RawMessage(
            record.value,
            Source(record.topic, record.partition, record.offset, record.timestamp / 1000),
        )
        for record in batch
    ]


def _fetch_wait_s(batch: FetchedBatch, messages: list[RawMessage]) -> float:
    """How long the batch's oldest record had been on the broker when the batch was fetched,
    by its Kafka timestamp (0 when a producer's clock runs ahead of ours)."""
    stamps = [m.source.timestamp for m in messages if m.source.timestamp is not None]
    if not stamps:
        return 0.0
    return max(0.0, batch.fetched_at - min(stamps))


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is larger than `limit` bytes."""
    native = cast(web.Request, request)
    if native.content_length is not None and native.content_length > limit:
        return None
    body = bytearray()
    async for chunk in native.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


METADATA_MAX_AGE_MS = 10_000


def faust_app_options(settings: Settings) -> dict[str, Any]:
    """The `faust.App` options of the worker's broker connection and consumer group: broker and
    credentials, raw serializers, no tables, the web port, topics never declared by Faust,
    commits every second, the session timeout and heartbeat, the data directory."""
    return {
        "broker": f"kafka://{settings.kafka_bootstrap_servers}",
        "broker_credentials": faust_credentials(settings.kafka),
        "key_serializer": "raw",
        "value_serializer": "raw",
        "store": "memory://",
        "web_host": settings.web_host,
        "web_bind": settings.web_host,
        "web_port": settings.web_port,
        "topic_disable_leader": True,
        "topic_allow_declare": False,
        "consumer_auto_offset_reset": "earliest",
        "broker_commit_interval": 1.0,
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": min(3.0, settings.session_timeout_s / 3),
        # aiokafka does not refresh its metadata when resetting a partition's offset fails on a
        # leader that moved (its fetcher logs "Failed fetch offsets from <node>" and asks the
        # same broker again) until the metadata ages out: 5 min by default, during which a
        # worker that took over partitions after a broker failover stalls on them. 10 s.
        "consumer_metadata_max_age_ms": METADATA_MAX_AGE_MS,
        "datadir": str(
            settings.state_dir / "faust" / f"{settings.consumer_group}-{settings.web_port}"
        ),
    }


def create_app(worker: Worker) -> faust.App:
    settings = worker.settings
    app = BatchApp(
        settings.consumer_group,
        **faust_app_options(settings),
        # Faust's own pages (/router, /table, /graph, stats) would show internals to anyone
        # who reaches the port: off. The worker serves /health, /metrics and /predict.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        # A fetch hands at most this many records to the route: a full batch when behind, what
        # has arrived when caught up (small batches, low latency).
        broker_max_poll_records=settings.batch_size,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
    transactions = app.topic(
        settings.topics.transactions, key_serializer="raw", value_serializer="raw"
    )
    feedback = app.topic(settings.topics.feedback, key_serializer="raw", value_serializer="raw")

    async def crash(exc: BaseException) -> None:
        # A batch that could not be delivered holds back its partition's commits: stop the
        # worker rather than keep deciding a partition that cannot make progress.
        await app.crash(exc)

    stage_seconds = worker.metrics.batch_stage

    def prepare(batch: FetchedBatch) -> Awaitable[PreparedBatch]:
        messages = _records(batch)
        stage_seconds.labels("fetch_wait").observe(_fetch_wait_s(batch, messages))
        return worker.handler.begin(messages)

    route: PipelinedRoute[FetchedBatch, PreparedBatch] = PipelinedRoute(
        prepare=prepare,
        deliver=worker.handler.publish,
        on_done=lambda batch: app.batch_consumer.ack_batch(batch),
        on_failure=crash,
        observe=lambda stage, seconds: stage_seconds.labels(stage).observe(seconds),
        depth=settings.pipeline_depth,
    )
    app.batch_topic(transactions, route)

    async def readiness() -> dict[str, Any]:
        model = worker.models.current
        kafka_ok = await worker.kafka_connected()
        stalled_s = route.oldest_in_flight_s()
        progressing = stalled_s < settings.stalled_batch_s
        ready = model is not None and kafka_ok and progressing
        worker.metrics.ready.set(1 if ready else 0)
        return {
            "ready": ready,
            "kafka": kafka_ok,
            "progressing": progressing,
            "oldest_batch_in_flight_s": round(stalled_s, 3),
            "model": None if model is None else {"name": model.name, "version": model.version},
        }

    # take_events lives on faust.Stream; the StreamT the agent decorator types its argument as
    # does not declare it. (Feedback is light: take_events acknowledges a batch after the loop
    # body, which returns once its dead letters are delivered.)
    @app.agent(feedback, name="apply-feedback")
    async def apply_feedback(stream: StreamT[Any]) -> None:
        async for events in cast(faust.Stream, stream).take_events(settings.batch_size, within=0.5):
            await _to_the_end(worker.handler.handle_feedback(_messages(events)))

    @app.timer(interval=settings.model_poll_interval_s)
    async def poll_model() -> None:
        await worker.models.refresh()
        await readiness()  # exported on every poll, not only when someone asks /health

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            body = await readiness()
            return self.json(body, status=200 if body["ready"] else 503)

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
            raw = await _bounded_body(request, settings.edge_max_bytes)
            if raw is None:
                return self.json(
                    {"error": f"request body larger than {settings.edge_max_bytes} bytes"},
                    status=413,
                )
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
            # Read-only: a request may look at the aggregates, never add to them.
            scored = await worker.handler.score_read_only([result])
            return self.bytes(orjson.dumps(scored.decisions[0]), content_type="application/json")

    return app
