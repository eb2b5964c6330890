"""Two of the benchmark's ceilings, measured in the same run as the worker (the third, the
Faust consume-only agent, is bench/faust_agent.py).

- The lab's design: a Flask endpoint scoring one transaction per request with the same
  champion (parse JSON, features from an in-memory store or without history, a one-row
  `predict_proba`, jsonify), served by gunicorn's threaded worker (one process, like one
  stream worker; keep-alive, no access log) and driven at maximum rate by keep-alive clients
  on loopback for a bounded count and time. Flask's own development server closes every
  connection, so it cannot serve keep-alive requests.
- The transport's ceiling: a bare confluent-kafka consume-and-produce loop that does no work,
  over the same pre-loaded topic the worker reads.
"""

from __future__ import annotations

import http.client
import itertools
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.context import FEATURE_MODES
from bench.kafka import flush, send
from fraud.errors import FraudScorerError
from fraud.settings import PROJECT_ROOT, KafkaConnection, Settings
from stream.kafka_io import make_consumer, make_producer

if TYPE_CHECKING:
    from flask import Flask

    from stream.features import InMemoryFeatureStore
    from stream.scoring import ScoringModel


def create_http_app(model: ScoringModel, store: InMemoryFeatureStore | None) -> Flask:
    """POST /score: one transaction in, one decision out. `store=None`: no history features."""
    from flask import Flask, jsonify, request

    from stream.features import features_without_history
    from stream.scoring import decide

    app = Flask("fraud-bench-http")
    store_lock = threading.Lock()  # the in-memory store is not thread-safe

    @app.get("/health")
    def health() -> Any:
        return jsonify(ready=True, model_version=model.version)

    @app.post("/score")
    def score() -> Any:
        event = request.get_json(force=True)
        if store is None:
            features = features_without_history(event)
        else:
            with store_lock:
                features = store.process_batch([event])[0]
        value = float(model.predict_proba(model.matrix([features]))[0])
        return jsonify(
            transaction_id=event["transaction_id"],
            score=value,
            decision=decide(value, model.thresholds),
            model_version=model.version,
        )

    return app


def http_app(state_dir: str, features: str = "memory") -> Flask:
    """gunicorn app factory: the champion under `state_dir`, loaded in the serving process."""
    from stream.features import InMemoryFeatureStore
    from stream.scoring import load_from_registry

    if features not in FEATURE_MODES:
        raise ValueError(f"features must be one of {FEATURE_MODES}, got {features!r}")
    settings = Settings(state_dir=Path(state_dir), mlflow_tracking_uri=None)
    model = load_from_registry(settings, settings.model_alias)
    return create_http_app(model, InMemoryFeatureStore() if features == "memory" else None)


class HttpServer:
    """gunicorn (one gthread worker process) serving `http_app` on a loopback port."""

    def __init__(
        self,
        state_dir: Path,
        port: int,
        threads: int,
        features: str,
        log_path: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        from bench.worker import child_env

        self.port = port
        self.log_path = log_path
        factory = f"bench.baselines:http_app({str(state_dir)!r}, {features!r})"
        command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}"]
        command += ["--workers", "1", "--worker-class", "gthread", "--threads", str(threads)]
        command += ["--keep-alive", "60", "--timeout", "300", "--log-level", "warning", factory]
        with log_path.open("wb") as log_file:
            self.popen = subprocess.Popen(
                command,
                cwd=PROJECT_ROOT,
                env=child_env(env or {}),
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise FraudScorerError(f"HTTP baseline server exited while starting:\n{tail}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise FraudScorerError(f"HTTP baseline server not ready within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


@dataclass
class HttpRun:
    count: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)


def drive_http(
    port: int, bodies: list[bytes], clients: int, max_seconds: float, warmup: int = 200
) -> HttpRun:
    """POST each body once to /score over `clients` keep-alive connections, as fast as the
    server answers, until the bodies run out or `max_seconds` pass. The first `warmup` bodies
    go first, one at a time, untimed."""
    headers = {"Content-Type": "application/json"}

    def post(connection: http.client.HTTPConnection, body: bytes) -> int:
        connection.request("POST", "/score", body, headers)
        response = connection.getresponse()
        response.read()
        return response.status

    warm = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for body in bodies[:warmup]:
        post(warm, body)
    warm.close()

    timed = bodies[warmup:]
    run = HttpRun()
    next_index = itertools.count()
    lock = threading.Lock()
    began = time.perf_counter()
    deadline = began + max_seconds

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies: list[float] = []
        errors = 0
        while True:
            index = next(next_index)
            if index >= len(timed) or time.perf_counter() >= deadline:
                break
            sent = time.perf_counter()
            if post(connection, timed[index]) != 200:
                errors += 1
            latencies.append((time.perf_counter() - sent) * 1000)
        connection.close()
        with lock:
            run.latencies_ms.extend(latencies)
            run.errors += errors

    threads = [threading.Thread(target=client, name=f"http-client-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.seconds = time.perf_counter() - began
    run.count = len(run.latencies_ms)
    return run


@dataclass(frozen=True)
class BareLoopRun:
    count: int
    seconds: float
    cpu_s: float  # this process (the loop and librdkafka's threads) over the same interval


def _process_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def bare_consume_produce(
    connection: KafkaConnection, source: str, sink: str, expected: int, timeout_s: float = 120
) -> BareLoopRun:
    """Consume `source`, produce each record unchanged to `sink`, commit once per consumed
    batch; timed from the first record received to the last one acknowledged by the broker."""
    consumer = make_consumer(connection, f"bench-bare-{uuid.uuid4().hex[:8]}")
    producer = make_producer(connection, {"queue.buffering.max.messages": 1_000_000})
    consumer.subscribe([source])
    count, began, cpu_began = 0, None, 0.0
    deadline = time.monotonic() + timeout_s
    try:
        while count < expected and time.monotonic() < deadline:
            batch = consumer.consume(1_000, timeout=0.5)
            if not batch:
                continue
            if began is None:
                began, cpu_began = time.perf_counter(), _process_cpu_s()
            for message in batch:
                if message.error() is not None:
                    continue
                send(producer, sink, message.key(), message.value() or b"")
                count += 1
            producer.poll(0)
            consumer.commit(asynchronous=True)
        flush(producer)
        seconds = time.perf_counter() - began if began is not None else 0.0
        cpu_s = _process_cpu_s() - cpu_began if began is not None else 0.0
    finally:
        consumer.close()
    return BareLoopRun(count, seconds, cpu_s)
