"""`fraud bench`: the end-to-end benchmark of the scoring worker and its ceilings (see bench/run.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from fraud.settings import PROJECT_ROOT, Settings


def bench(
    ctx: typer.Context,
    events: int = typer.Option(100_000, help="Events pre-loaded for the saturation run."),
    rates: str = typer.Option("1000,2000,5000", help="Offered rates in tx/s, comma-separated."),
    duration: float = typer.Option(15.0, help="Seconds of paced sending per rate."),
    warmup: float = typer.Option(3.0, help="Seconds at the lowest rate before the fixed rates."),
    saturation_timeout: float = typer.Option(
        45.0, help="Most seconds of the saturation run after its first decision."
    ),
    drain_timeout: float = typer.Option(
        10.0, help="Most seconds to wait for a fixed-rate run's backlog after sending."
    ),
    customers: int = typer.Option(5_000, help="Customers of the simulated bank."),
    seed: int = typer.Option(1, help="Seed of the simulated bank and its traffic."),
    warm_days: float = typer.Option(
        0.0,
        help="Days of the bank's history loaded into each worker's feature store before it "
        "starts (as `fraud warm-store` does in production); 0: workers start from an empty store.",
    ),
    partitions: int = typer.Option(4, help="Partitions of each benchmark topic."),
    batch_size: int = typer.Option(
        None, help="Worker micro-batch size (default: FRAUD_BATCH_SIZE or 500)."
    ),
    env: list[str] = typer.Option(
        [],
        "--env",
        help="NAME=VALUE added to the environment of the worker and the HTTP server "
        "(repeatable), e.g. --env OMP_NUM_THREADS=1.",
    ),
    state_dir: Path = typer.Option(
        None,
        help="State folder whose MLflow store has a champion to reuse (trained there if none); "
        "default: a private temporary one with a small champion trained for the run.",
    ),
    out: Path = typer.Option(PROJECT_ROOT / "bench-results", help="Folder of the results JSON."),
    baselines: bool = typer.Option(
        True,
        help="Also measure the ceilings: bare Kafka loop, Faust consume-only agent, one HTTP "
        "request per transaction.",
    ),
    http_requests: int = typer.Option(20_000, help="Most requests of the HTTP baseline."),
    http_seconds: float = typer.Option(15.0, help="Most seconds of the HTTP baseline."),
    http_clients: int = typer.Option(2, help="Keep-alive client connections (= server threads)."),
    http_features: str = typer.Option(
        "memory", help="HTTP baseline features: memory (in-process history) or none."
    ),
    two_workers: bool = typer.Option(
        True, help="Also measure two workers in one group sharing the partitions."
    ),
    profile: bool = typer.Option(
        True,
        help="Also sample a saturated worker with py-spy and show where its time goes by area "
        "(raw stacks kept in bench-results/).",
    ),
    cprofile: bool = typer.Option(
        False, help="Also run a worker under cProfile (every thread; counts calls, inflates them)."
    ),
    profile_top: int = typer.Option(25, help="Rows of the profile tables."),
) -> None:
    """Measure the worker end to end on the running Kafka and Redis (needs `make services`).

    Saturation decisions/s over pre-loaded events with CPU-seconds per 1,000 decisions, latency
    p50/p95/p99 at fixed offered rates, two workers in one group, a py-spy profile by area, and
    in the same run the ceilings: a bare Kafka consume/produce loop, a Faust consume-only agent
    and one-request-per-transaction HTTP scoring. Prints tables and writes
    bench-results/bench-<run>.json.
    """
    import sys

    from rich.console import Console

    from bench.context import BenchOptions, parse_env, parse_rates
    from bench.report import render
    from bench.run import run_bench, write_results

    settings: Settings = ctx.obj
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health poll otherwise
    options = BenchOptions(
        events=events,
        rates=parse_rates(rates),
        duration_s=duration,
        warmup_s=warmup,
        saturation_timeout_s=saturation_timeout,
        drain_timeout_s=drain_timeout,
        customers=customers,
        seed=seed,
        warm_days=warm_days,
        partitions=partitions,
        batch_size=batch_size,
        env=parse_env(env),
        state_dir=state_dir,
        out_dir=out,
        baselines=baselines,
        http_requests=http_requests,
        http_seconds=http_seconds,
        http_clients=http_clients,
        http_features=http_features,
        two_workers=two_workers,
        profile=profile,
        cprofile=cprofile,
        profile_top=profile_top,
    )
    # Piped output (make, CI logs) would otherwise be cut to 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 200)
    run = run_bench(settings, options, console)
    path = write_results(run, out)
    render(run.document(), console)
    console.print(f"results: {path}")


def chaos(
    ctx: typer.Context,
    rate: float = typer.Option(150.0, help="Offered transactions per second, held throughout."),
    faults: str = typer.Option(
        "full",
        help="full, short, or fault names in order, comma-separated (scale-out, worker-kill, "
        "broker-kill, redis-kill, zombie, scale-in).",
    ),
    partitions: int = typer.Option(6, help="Partitions of each topic of the run."),
    settle: float = typer.Option(10.0, help="Seconds of steady traffic after each recovery."),
    broker_down: float = typer.Option(15.0, help="Seconds a killed Kafka node stays down."),
    redis: str = typer.Option(
        "cluster",
        help="Feature state on the Redis Cluster (cluster) or on one private redis-server "
        "(single).",
    ),
    state_dir: Path = typer.Option(
        None,
        help="State folder whose champion to reuse (trained there if none); default: a "
        "small one trained for the run.",
    ),
    out: Path = typer.Option(PROJECT_ROOT / "bench-results", help="Folder of the report JSON."),
    keep_stack: bool = typer.Option(False, help="Leave a clustered stack started here running."),
) -> None:
    """Prove nothing is lost under faults: traffic through three workers on the clustered
    stack while workers, a Kafka node and a Redis primary die, workers scale and one freezes.

    Starts the clustered stack (ops/cluster.sh, ports FRAUD_CLUSTER_*_PORT) unless it runs,
    prints a table per fault and writes bench-results/chaos-<run>.json; exit 1 when something
    was lost, counted twice or dead-lettered.
    """
    import sys

    from rich.console import Console

    from bench.chaos import (
        FULL_PLAN,
        SHORT_PLAN,
        ChaosOptions,
        ClusterPorts,
        ClusterStack,
        render,
        run_chaos,
        write_report,
    )

    settings: Settings = ctx.obj
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Connection errors are the point of the run while a broker is down; the report says
    # what they cost.
    for name in ("librdkafka", "stream.kafka_io"):
        logging.getLogger(name).setLevel(logging.ERROR + 10)
    plans = {"full": FULL_PLAN, "short": SHORT_PLAN}
    plan = plans.get(faults) or tuple(name.strip() for name in faults.split(",") if name.strip())
    options = ChaosOptions(
        rate=rate,
        plan=plan,
        partitions=partitions,
        settle_s=settle,
        broker_down_s=broker_down,
        redis=redis,
        state_dir=state_dir.resolve() if state_dir else None,  # MLflow needs absolute paths
        out_dir=out.resolve(),
    )
    options.validate()
    console = Console(width=None if sys.stdout.isatty() else 200)
    stack = ClusterStack(settings.state_dir, ClusterPorts.from_env())
    started = not stack.is_running()
    if started:
        console.print("starting the clustered stack (ops/cluster.sh up)")
        stack.up()
    try:
        run = run_chaos(settings, options, stack, say=console.print)
    finally:
        if started and not keep_stack:
            stack.down()
    path = write_report(run.document, out)
    render(run.document, console)
    console.print(f"report: {path}")
    if run.failures:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(bench)
    app.command()(chaos)
