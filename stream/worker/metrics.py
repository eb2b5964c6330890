"""Every Prometheus metric of the scorer, in one place, with bounded label values.

A `ScorerMetrics` owns its own registry so that several workers (or tests) in one process do
not collide; `/metrics` serves that registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

OUTCOMES = ("decided", "dead_lettered")
DEAD_LETTER_REASONS = (
    "invalid_json",
    "schema",
    "card_number",
    "processing_error",
    "too_large",
    "too_deep",
    "too_many_fields",
    "too_long",
    "event_time",
    "duplicate_id",
    "label_time",
    "label_source",
    "output_too_large",
)
DECISIONS = ("approve", "review", "decline")
# Why a model version at the alias was not swapped in: its integrity check failed (unsigned,
# untrusted key, changed files or tags), or it needs features the stream does not compute.
MODEL_REFUSALS = ("integrity", "incompatible")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_STAGES = ("fetch_wait", "deciding", "delivery")
# Finer than LATENCY_BUCKETS below 100 ms, where a stage of a batch that keeps up lies.
STAGE_BUCKETS = (
    0.001,
    0.002,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
)
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000)
SCORE_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.99)


class ScorerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.transactions = Counter(
            "fraud_transactions", "Transactions consumed, by outcome", ["outcome"], registry=r
        )
        self.decisions = Counter(
            "fraud_decisions", "Decisions written, by tier", ["decision"], registry=r
        )
        self.dead_letters = Counter(
            "fraud_dead_letters",
            "Events sent to the dead-letter topic, by reason",
            ["reason"],
            registry=r,
        )
        self.pan_tokenized = Counter(
            "fraud_pan_tokenized", "Card numbers replaced by a token at the edge", registry=r
        )
        self.degraded = Counter(
            "fraud_degraded_decisions",
            "Decisions made with default aggregates (Redis unavailable)",
            registry=r,
        )
        self.redis_errors = Counter("fraud_redis_errors", "Failed Redis round trips", registry=r)
        self.backfilled = Counter(
            "fraud_degraded_backfilled",
            "Transactions decided while Redis was unavailable, folded into the aggregates later",
            registry=r,
        )
        self.backfill_dropped = Counter(
            "fraud_degraded_backfill_dropped",
            "Transactions decided while Redis was unavailable that the aggregates will miss "
            "(the in-memory backlog was full)",
            registry=r,
        )
        self.untrusted_scores = Counter(
            "fraud_untrusted_scores",
            "Scores that were not a probability (NaN, infinite, outside [0, 1]): sent to review",
            registry=r,
        )
        self.batch_failures = Counter(
            "fraud_batch_failures",
            "Batches that failed as a whole (a bug): their inputs were dead-lettered",
            registry=r,
        )
        self.produce_retries = Counter(
            "fraud_produce_retries", "Output records re-sent after a delivery failure", registry=r
        )
        self.latency = Histogram(
            "fraud_event_to_decision_seconds",
            "From the transaction's timestamp to its decision",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_stage = Histogram(
            "fraud_batch_stage_seconds",
            "Where a micro-batch's time goes: its oldest transaction's wait before the batch was "
            "fetched (fetch_wait), fetched to decided (deciding: admission, the store lane's "
            "queue and Redis round trips, scoring) and its outputs' delivery to the broker "
            "(delivery)",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "fraud_batch_size", "Transactions per micro-batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.score = Histogram("fraud_score", "Model scores", buckets=SCORE_BUCKETS, registry=r)
        self.model = Info("fraud_model", "The model version making decisions", registry=r)
        self.model_reloads = Counter(
            "fraud_model_reloads", "Champion swaps without restart", registry=r
        )
        self.model_refused = Counter(
            "fraud_model_refused",
            "Model versions at the alias that were not swapped in, by reason",
            ["reason"],
            registry=r,
        )
        self.ready = Gauge(
            "fraud_worker_ready", "1 when the model is loaded and Kafka is connected", registry=r
        )
        for outcome in OUTCOMES:
            self.transactions.labels(outcome)
        for decision in DECISIONS:
            self.decisions.labels(decision)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)
        for reason in MODEL_REFUSALS:
            self.model_refused.labels(reason)
        for stage in BATCH_STAGES:
            self.batch_stage.labels(stage)
