"""The scoring worker: a Faust app whose agents hand micro-batches to `BatchHandler`.

    worker = build_worker(settings)     # settings, store, models, producer, metrics, handler
    app = create_app(worker)            # agents for `transactions` and `feedback`, HTTP views

`handler` is the batch from admission to output, independent of Faust; `output` puts a
batch's records on the broker and waits for all of them; `models` keeps the champion current
(and `freeze_heap` keeps the garbage collector off the long-lived heap);
`metrics` is the one place the worker's Prometheus metrics are defined; `logs` are JSON lines
with card numbers masked.
"""

from stream.worker.app import Worker, build_worker, create_app, faust_app_options
from stream.worker.handler import BatchHandler, PreparedBatch, RawMessage
from stream.worker.logs import logging_config
from stream.worker.metrics import DECISIONS, ScorerMetrics
from stream.worker.models import ModelHolder, freeze_heap
from stream.worker.output import BatchProducer

__all__ = [
    "DECISIONS",
    "BatchHandler",
    "BatchProducer",
    "ModelHolder",
    "PreparedBatch",
    "RawMessage",
    "ScorerMetrics",
    "Worker",
    "build_worker",
    "create_app",
    "faust_app_options",
    "freeze_heap",
    "logging_config",
]
