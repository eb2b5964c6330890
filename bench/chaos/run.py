"""One chaos run (`fraud chaos`, `make chaos`): steady traffic through `fraud worker` processes
on the clustered stack, the faults of the plan injected one after another while it flows, then
every topic read back and the verdict drawn (bench.chaos.verify, bench.chaos.aggregates).

In order, on private topics, consumer group and Redis prefix (all removed afterwards):
1. a champion: reused from `state_dir`, else a small one trained for the run;
2. the feature state: the stack's Redis Cluster, or one private redis-server (`redis="single"`);
3. one worker, then traffic at `rate` tx/s; `steady` until the group is caught up;
4. each fault of the plan (bench.chaos.faults), then `settle`;
5. traffic stops; wait until every acknowledged transaction has a decision (or the drain
   timeout); the workers stop;
6. read back the transactions, decisions and dead letters; replay; compare; report.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import kafka
from bench.chaos.aggregates import (
    admitted_events,
    compare_state,
    recorded_features,
    records_differing,
    replay,
)
from bench.chaos.faults import FAULTS, FULL_PLAN, ChaosContext
from bench.chaos.redis_target import ClusterRedis, RedisTarget, SingleRedis
from bench.chaos.stack import ClusterStack
from bench.chaos.traffic import SteadyTraffic
from bench.chaos.verify import Decided, InputRecord, Phase, Verdict, parse_decision, verify
from bench.chaos.workers import WorkerPool
from bench.context import load_average, machine_info
from bench.worker import prepare_champion
from fraud.errors import ConfigError
from fraud.settings import KafkaConnection, Settings
from simulator import Bank, LiveTraffic


@dataclass(frozen=True)
class ChaosOptions:
    rate: float = 150.0
    plan: tuple[str, ...] = FULL_PLAN
    partitions: int = 6
    customers: int = 5_000
    seed: int = 7
    settle_s: float = 10.0
    broker_down_s: float = 15.0
    session_timeout_s: float = 6.0
    redis: str = "cluster"  # cluster | single (one private redis-server)
    state_dir: Path | None = None  # a champion to reuse (trained there if none)
    out_dir: Path = Path("bench-results")
    drain_timeout_s: float = 180.0

    def validate(self) -> None:
        unknown = [name for name in self.plan if name not in FAULTS]
        if unknown:
            raise ConfigError(f"unknown faults {unknown}; known: {', '.join(FAULTS)}")
        if self.redis not in ("cluster", "single"):
            raise ConfigError(f"redis must be cluster or single, got {self.redis!r}")
        if self.rate <= 0 or self.partitions < 3:
            raise ConfigError("rate must be positive and partitions at least 3 (three workers)")


@dataclass
class ChaosRun:
    document: dict[str, Any]
    verdict: Verdict
    failures: list[str] = field(default_factory=list)


def _redis_target(stack: ClusterStack, options: ChaosOptions, scratch: Path) -> RedisTarget:
    mode = options.redis
    if mode == "cluster":
        return ClusterRedis(stack)
    # The port after the cluster's six: inside the stack's block of ports.
    single = SingleRedis(scratch / "redis", stack.ports.redis + 6)
    single.start()
    return single


def live_store(settings: Settings, cluster: bool) -> Any:
    """The workers' feature store (settings: their Redis URL and prefix), opened as a worker
    opens it."""
    from stream.features import RedisFeatureStore
    from stream.redis_io import connect_redis

    client = connect_redis(
        settings.model_copy(update={"redis_cluster": cluster}), socket_timeout=10
    )
    label_delay = timedelta(days=settings.label_delay_days)
    return RedisFeatureStore(client, settings.redis_prefix, label_delay=label_delay)


def _wait_decided(
    connection: KafkaConnection, topic: str, expected: set[str], timeout_s: float
) -> None:
    """Until the decisions topic covers every expected transaction (or the timeout)."""
    probe = kafka.offset_probe(connection)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ends = kafka.end_offsets(probe, topic)
            if sum(ends.values()) >= len(expected):
                ids = kafka.read_records(
                    connection, topic, {}, ends, lambda v: parse_decision(v).transaction_id
                )
                if not expected - set(ids):
                    return
            time.sleep(2)
    finally:
        probe.close()


def _read_back(connection: KafkaConnection, topics: kafka.BenchTopics) -> tuple[list, list, list]:
    probe = kafka.offset_probe(connection)
    try:
        ends = {name: kafka.end_offsets(probe, name) for name in topics.names()}
    finally:
        probe.close()

    def raw(message: Any) -> tuple[int, int, float, bytes]:
        return message.partition(), message.offset(), message.timestamp()[1] / 1000, message.value()

    def dead(message: Any) -> tuple[str, float]:
        import orjson

        return str(orjson.loads(message.value()).get("reason")), message.timestamp()[1] / 1000

    inputs = kafka.read_messages(
        connection, topics.transactions, {}, ends[topics.transactions], raw
    )
    decisions = kafka.read_records(
        connection, topics.decisions, {}, ends[topics.decisions], parse_decision
    )
    dead_letters = kafka.read_messages(
        connection, topics.dead_letter, {}, ends[topics.dead_letter], dead
    )
    return inputs, decisions, dead_letters


def run_chaos(
    settings: Settings,
    options: ChaosOptions,
    stack: ClusterStack,
    say: Callable[[str], None] = print,
) -> ChaosRun:
    options.validate()
    run_id = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix="fraud-chaos-") as folder:
        scratch = Path(folder)
        say("champion: reusing or training one")
        champion = prepare_champion(options.state_dir or scratch / "state", scratch)
        redis = _redis_target(stack, options, scratch)
        topics = kafka.BenchTopics.unique(run_id, "chaos")
        ledger = kafka.TopicLedger(stack.connection, options.partitions)
        prefix = f"chaos-{run_id}"
        label_delay = timedelta(days=settings.label_delay_days)
        try:
            ledger.create(topics.names())
            env = {
                **topics.env(),
                "FRAUD_STATE_DIR": str(champion.state_dir),
                "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
                "REDIS_URL": redis.url,
                "FRAUD_CONSUMER_GROUP": prefix,
                "FRAUD_REDIS_PREFIX": prefix,
                "FRAUD_SESSION_TIMEOUT_S": str(options.session_timeout_s),
                "FRAUD_LABEL_DELAY_DAYS": str(settings.label_delay_days),
                **({"FRAUD_REDIS_CLUSTER": "1"} if redis.cluster else {}),
            }
            logs = options.out_dir / f"chaos-{run_id}-logs"
            pool = WorkerPool(env, logs)
            try:
                phases, log = _inject(stack, redis, pool, topics, options, prefix, say)
                say("draining: waiting for a decision of every acknowledged transaction")
                acked = {tx for tx, at in zip(log.ids, log.acked_at, strict=True) if at}
                _wait_decided(stack.connection, topics.decisions, acked, options.drain_timeout_s)
            finally:
                pool.stop_all()
            crashed = pool.check()
            say("reading every topic back; replaying; comparing the aggregates")
            raw_inputs, decisions, dead_letters = _read_back(stack.connection, topics)
            inputs = {_tx_id(value): InputRecord(p, o, t) for p, o, t, value in raw_inputs}
            events = admitted_events(raw_inputs, topics.transactions, settings)
            ideal_store, ideal = replay(events, label_delay)
            workers = settings.model_copy(update={"redis_url": redis.url, "redis_prefix": prefix})
            live = live_store(workers, redis.cluster)
            aggregates = compare_state(live, ideal_store, events)
            first = _first_full(decisions)
            aggregates["records_differing"] = len(
                records_differing(recorded_features(live, events), first)
            )
            verdict = verify(log, inputs, decisions, dead_letters, phases, ideal, aggregates)
            live.clear()
        finally:
            ledger.delete_all()
            if isinstance(redis, SingleRedis):
                redis.stop()
    failures = verdict.failures() + [f"worker exited on its own, see {p}" for p in crashed]
    document = {
        "run": {
            "id": run_id,
            "rate": options.rate,
            "plan": list(options.plan),
            "partitions": options.partitions,
            "kafka": f"3 nodes ({stack.bootstrap})",
            "redis": "cluster" if redis.cluster else "single node",
            "options": {k: str(v) for k, v in asdict(options).items()},
            "champion_version": champion.version,
            "machine": machine_info(),
            "load_average_end": load_average(),
            "worker_logs": str(logs),
        },
        "totals": verdict.totals,
        "phases": verdict.phases,
        "failures": failures,
    }
    return ChaosRun(document, verdict, failures)


def _tx_id(value: bytes) -> str:
    import orjson

    return str(orjson.loads(value)["transaction_id"])


def _first_full(decisions: list[Decided]) -> dict[str, dict[str, float | None]]:
    """Each transaction's first decision's features, when it was decided with the store."""
    first: dict[str, Decided] = {}
    for decision in sorted(decisions, key=lambda d: d.decided_at):
        first.setdefault(decision.transaction_id, decision)
    return {tx: d.features for tx, d in first.items() if not d.degraded}


def _inject(
    stack: ClusterStack,
    redis: RedisTarget,
    pool: WorkerPool,
    topics: kafka.BenchTopics,
    options: ChaosOptions,
    group: str,
    say: Callable[[str], None],
) -> tuple[list[Phase], Any]:
    ctx = ChaosContext(
        stack=stack,
        redis=redis,
        pool=pool,
        group=group,
        input_topic=topics.transactions,
        topics=topics.names(),
        rate=options.rate,
        settle_s=options.settle_s,
        session_timeout_s=options.session_timeout_s,
        broker_down_s=options.broker_down_s,
    )
    say("starting worker w1")
    pool.start("w1")
    bank = Bank.build(options.customers, options.seed)
    traffic = SteadyTraffic(
        stack.connection, topics.transactions, LiveTraffic(bank, options.seed), options.rate
    ).start()
    phases = [Phase("steady", time.time(), detail="1 worker, steady traffic")]
    try:
        ctx.settle(phases[0])
        counts: dict[str, int] = {}
        for kind in options.plan:
            counts[kind] = counts.get(kind, 0) + 1
            repeated = options.plan.count(kind) > 1
            name = f"{kind}-{counts[kind]}" if repeated else kind
            say(f"fault {name}")
            phase = Phase(name, time.time())
            phases[-1].ended_at = phase.started_at
            phases[-1].workers = len(pool.names)
            phases.append(phase)
            FAULTS[kind](ctx, phase)
            phase.workers = len(pool.names)
            say(f"  {phase.detail}")
            ctx.settle(phase)
    finally:
        log = traffic.stop()
    phases[-1].ended_at = log.stopped_at
    phases[-1].workers = len(pool.names)
    phases[0].started_at = log.started_at
    return phases, log
