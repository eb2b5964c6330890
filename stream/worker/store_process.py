"""The feature store in a process of its own (FRAUD_STORE_PROCESS, on by default).

A worker's event loop (admission, scoring, decisions) and its store lane (the Redis store's
Python: encoding a batch, the Redis client, the feature kernels' callers) share one GIL, so
their CPU adds up on one core however the two threads overlap. With this setting the worker
starts a child process with a RedisFeatureStore of its own (its connection, its remembered card
states), and the store lane hands it each batch's events and waits for the features: the two
halves then run on two cores. Calls reach the child one at a time, in the order the store lane
gives them, so a card's batches reach Redis in order.

What crosses the pipe is pickled: a batch's events (dicts of JSON scalars) one way, the feature
matrix and the conflicting rows the other. A Redis error in the child reaches the worker as a
redis.RedisError (the worker degrades as it would in-process). Should the child die, the batch
it had is run by the worker's own store (whatever the child wrote of it is found there: its
transactions as redeliveries, its cards at their new versions, checked on write) and the next
batch starts a new child. Labels stay in the worker's own store: they touch no card state.

Measured (README, Benchmarks): more decisions/s at saturation, and with three batches in flight
(FRAUD_PIPELINE_DEPTH=3, the default) lower latency at moderate rates as well; with two, the
two process wake-ups of each batch showed in the latency on a busy machine.
FRAUD_STORE_PROCESS=0 keeps the store in the worker's own lane thread.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import signal
import threading
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from fraud.settings import Settings
from stream.features import BatchFeatures, FloatArray, LabelResult, RedisFeatureStore

log = logging.getLogger(__name__)

_PICKLE = pickle.HIGHEST_PROTOCOL


class StoreProcess:
    """The methods of a FeatureStore the worker calls: batches in a RedisFeatureStore of a
    child process built from `settings`; labels, degraded defaults and a dead child's batch in
    `local` (the worker's own store). Calls must come one at a time (the worker's store lane)."""

    def __init__(self, settings: Settings, local: RedisFeatureStore) -> None:
        self._settings = settings
        self._local = local
        self._lock = threading.Lock()
        self._connection: Any = None
        self._process: Any = None
        self._start()

    def process(self, events: Sequence[Mapping[str, Any]], *, write: bool = True) -> BatchFeatures:
        try:
            result: BatchFeatures = self._in_child(list(events), write)
        except _ChildLost as lost:
            log.warning("the feature store process stopped (%s); this batch runs here", lost)
            return self._local.process(events, write=write)
        return result

    def apply_labels_checked(self, labels: Sequence[Mapping[str, Any]]) -> LabelResult:
        return self._local.apply_labels_checked(labels)

    def default_matrix(self, events: Sequence[Mapping[str, Any]]) -> FloatArray:
        """Features with no history (degraded mode): needs no state."""
        return self._local.default_matrix(events)

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _in_child(self, events: list[Mapping[str, Any]], write: bool) -> Any:
        import redis

        request = pickle.dumps((events, write), protocol=_PICKLE)
        with self._lock:
            if self._process is None or not self._process.is_alive():
                self._stop()
                self._start()
            try:
                self._connection.send_bytes(request)
                kind, value = pickle.loads(self._connection.recv_bytes())
            except (EOFError, OSError) as exc:
                self._stop()  # started again by the next call
                raise _ChildLost(repr(exc)) from exc
        if kind == "ok":
            return value
        if kind == "redis":
            raise redis.RedisError(value)
        raise value

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        self._process = context.Process(
            target=serve, args=(theirs, self._settings), name="fraud-feature-store", daemon=True
        )
        self._process.start()
        theirs.close()
        self._connection = ours
        log.info("feature store process started (pid %d)", self._process.pid)

    def _stop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._process is not None:
            self._process.join(timeout=5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(timeout=5)
            self._process = None


def redis_feature_store(settings: Settings) -> RedisFeatureStore:
    """The worker's RedisFeatureStore (short Redis timeouts: a slow Redis degrades a batch
    rather than stall the stream)."""
    from stream.redis_io import connect_redis

    client = connect_redis(
        settings, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=0
    )
    return RedisFeatureStore(
        client,
        settings.redis_prefix,
        label_delay=timedelta(days=settings.label_delay_days),
        card_cache_bytes=settings.card_cache_mb * 2**20,
    )


class _ChildLost(Exception):
    """The child process stopped (killed, crashed) before it answered."""


def serve(connection: Any, settings: Settings) -> None:
    """The child: a RedisFeatureStore processing the worker's batches until the pipe closes."""
    import redis

    # Ctrl-C reaches the whole process group: the worker shuts down and closes the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    store = redis_feature_store(settings)
    while True:
        try:
            events, write = pickle.loads(connection.recv_bytes())
        except (EOFError, OSError):
            return
        try:
            answer: tuple[str, Any] = ("ok", store.process(events, write=write))
        except redis.RedisError as exc:
            answer = ("redis", repr(exc))
        except Exception as exc:  # noqa: BLE001 - handed to the worker, which isolates it
            answer = ("error", exc)
        try:
            data = pickle.dumps(answer, protocol=_PICKLE)
        except Exception as exc:  # noqa: BLE001 - an exception that does not pickle
            data = pickle.dumps(("error", RuntimeError(repr(answer[1]))), protocol=_PICKLE)
            log.debug("unpicklable answer: %r", exc)
        try:
            connection.send_bytes(data)
        except (EOFError, OSError):
            return
