"""End-to-end benchmark of one scoring worker on the real broker and Redis (`fraud bench`).

    fraud bench                                  # ~5 minutes: 100k events, 1k/2k/5k tx/s
    fraud bench --events 200000 --rates 2000,8000 --duration 20 --state-dir .state

One run, in this order, on private topics (deleted afterwards) and private Redis prefixes:
1. a champion: reused from --state-dir, else a small one trained into a private MLflow store;
2. N live events pre-loaded onto a transactions topic;
3. baseline (b): a bare confluent-kafka consume-and-produce loop over that topic;
4. (--profile) a worker under cProfile (every thread) over that topic, with its own outputs;
5. saturation: a worker started on the pre-loaded topic; decisions/s from its first to its
   last decision (`decided_at`), so start-up is excluded; capped at --saturation-timeout;
6. fixed rates (ascending) on a warmed-up worker without backlog (the saturation worker when
   it finished its events, else a fresh one on fresh topics), fed by a paced producer for
   --duration seconds per rate; sustained decisions/s = decisions decided inside the sending
   window / its length; latency percentiles from the decisions' `latency_ms` (decided_at -
   the record's Kafka timestamp, set when sent). After a rate the worker did not keep up with, the higher rates are
   skipped (its backlog would only grow);
7. baseline (a): the lab's one-transaction-per-request Flask endpoint with the same model;
then a table, the ratios, the targets, and bench-results/bench-<run>.json. A baseline that
fails is reported as an error in the results instead of discarding the worker's figures.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer
from rich.console import Console

from bench import kafka
from bench.context import (
    BenchContext,
    BenchOptions,
    load_average,
    machine_info,
    versions,
)
from bench.results import (
    BaselineResult,
    FixedRateResult,
    SaturationResult,
    fixed_rate_result,
    latency_summary,
    rate,
    results_document,
    saturation_result,
)
from bench.worker import Champion, CpuMeter, WorkerProcess, free_port, prepare_champion
from fraud.errors import FraudScorerError
from fraud.settings import Settings
from fraud.times import utc_now_iso
from simulator.live import LiveTraffic

HTTP_WARMUP_REQUESTS = 200


@dataclass
class BenchRun:
    """What one run measured; `document()` is what goes to the JSON file."""

    run_id: str
    started_at: str
    machine: dict[str, Any]
    versions: dict[str, Any]
    settings: dict[str, Any]
    saturation: SaturationResult | None = None
    fixed: list[FixedRateResult] = field(default_factory=list)
    skipped_rates: list[float] = field(default_factory=list)
    baselines: dict[str, BaselineResult] = field(default_factory=dict)
    profile: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    finished_at: str = ""

    def document(self) -> dict[str, Any]:
        document = results_document(
            run_id=self.run_id,
            started_at=self.started_at,
            finished_at=self.finished_at,
            machine=self.machine,
            versions=self.versions,
            settings=self.settings,
            saturation=self.saturation,
            fixed=self.fixed,
            skipped_rates=self.skipped_rates,
            baselines=self.baselines,
            profile=self.profile,
        )
        document["timings_s"] = {k: round(v, 3) for k, v in self.timings.items()}
        document["errors"] = list(self.errors)
        return document


@dataclass
class Phase:
    """What every step needs: the run's context, its record, the traffic and a producer."""

    context: BenchContext
    run: BenchRun
    console: Console
    champion: Champion
    traffic: LiveTraffic
    producer: Producer

    @property
    def options(self) -> BenchOptions:
        return self.context.options

    @contextmanager
    def step(self, name: str, text: str) -> Iterator[None]:
        began = time.perf_counter()
        with self.console.status(text):
            yield
        self.run.timings[name] = time.perf_counter() - began
        self.console.log(f"{text.rstrip('.')}: {self.run.timings[name]:.1f} s")

    def start_worker(self, topics: kafka.BenchTopics, trial: str, **kwargs: Any) -> WorkerProcess:
        port = free_port()
        env = self.context.worker_env(self.champion.state_dir, topics, trial, port)
        log_path = self.context.run_dir / f"worker-{trial}.log"
        return WorkerProcess(env, port, log_path, **kwargs)


def run_bench(settings: Settings, options: BenchOptions, console: Console) -> BenchRun:
    """Every step of the module docstring; topics and Redis keys are removed at the end."""
    options.validate()
    # Child processes resolve paths from the project root, and MLflow needs absolute ones.
    options = replace(
        options,
        state_dir=None if options.state_dir is None else options.state_dir.resolve(),
        out_dir=options.out_dir.resolve(),
    )
    context = BenchContext(settings, options)
    context.check_services()
    run = BenchRun(
        run_id=context.run_id,
        started_at=utc_now_iso("seconds"),
        machine=machine_info(),
        versions=versions(context.redis),
        settings=options.record(settings),
    )
    context.run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="fraud-bench-") as scratch:
            _run_steps(context, run, console, Path(scratch))
    finally:
        context.clean_up()
    run.finished_at = utc_now_iso("seconds")
    run.machine["load_average_at_end"] = load_average()
    return run


def _run_steps(context: BenchContext, run: BenchRun, console: Console, scratch: Path) -> None:
    from simulator.bank import Bank

    options = context.options
    began = time.perf_counter()
    with console.status("Preparing the champion (a small one is trained when none)..."):
        champion = prepare_champion(options.state_dir or scratch / "state", scratch)
    run.timings["champion"] = time.perf_counter() - began
    console.log(
        f"champion: version {champion.version}, "
        + ("trained" if champion.trained else "reused")
        + f" in {champion.seconds:.0f} s"
    )
    run.settings["champion"] = {
        "version": champion.version,
        "trained_now": champion.trained,
        "state_dir": str(champion.state_dir) if options.state_dir else "(private, temporary)",
    }
    bank = Bank.build(customers=options.customers, seed=options.seed)
    traffic = LiveTraffic(bank, seed=options.seed, run_id=context.run_id)
    phase = Phase(
        context, run, console, champion, traffic, kafka.bench_producer(context.connection)
    )

    topics = context.new_topics("s")
    with phase.step("preload", f"Pre-loading {options.events:,} events..."):
        kafka.preload(
            phase.producer, topics.transactions, kafka.generate_events(traffic, options.events)
        )
    if options.baselines:
        with phase.step("bare_loop", "Baseline: bare consume-and-produce loop..."):
            run.baselines["bare_kafka_loop"] = bare_loop_baseline(phase, topics)
    if options.profile:
        with phase.step("profile", "Profiling a worker over the pre-loaded events..."):
            run.profile = profile_trial(phase, topics)
    worker = phase.start_worker(topics, "s")
    try:
        with phase.step("worker_start", "Starting the worker..."):
            worker.wait_healthy()
        with phase.step("saturation", f"Saturation over {options.events:,} events..."):
            run.saturation = saturation(phase, worker, topics)
    except BaseException:
        worker.stop()
        raise
    running: RunningWorker | None = RunningWorker(worker, topics)
    if not run.saturation.complete:  # a backlog is left: the fixed rates need a fresh worker
        worker.stop()
        running = None
    run.fixed, run.skipped_rates = fixed_rates(phase, running, run.saturation.decisions_per_s)
    if options.baselines:
        try:
            with phase.step("http", "Baseline: one HTTP request per transaction..."):
                run.baselines["http_per_request"] = http_baseline(phase)
        except FraudScorerError as exc:
            console.print(f"[red]HTTP baseline failed: {exc}[/red]")
            run.errors.append(f"http_per_request: {exc}")


def saturation(phase: Phase, worker: WorkerProcess, topics: kafka.BenchTopics) -> SaturationResult:
    """Wait until every pre-loaded event has its decision (or dead letter), at most
    --saturation-timeout after the first output, then read the decision instants."""
    options, connection = phase.options, phase.context.connection
    probe = kafka.offset_probe(connection)
    try:
        start = {t: kafka.end_offsets(probe, t) for t in (topics.decisions, topics.dead_letter)}
        meter = CpuMeter(worker.cpu_seconds)
        first_output: list[float] = []

        def on_poll(count: int) -> None:
            meter.observe(count)
            if count and not first_output:
                first_output.append(time.monotonic())
            if first_output and time.monotonic() - first_output[0] > options.saturation_timeout_s:
                raise _TimeUp

        try:
            kafka.wait_for_records(
                probe, list(start), list(start.values()), options.events, 60.0, on_poll
            )
        except _TimeUp:
            pass
        end = {t: kafka.end_offsets(probe, t) for t in start}
    finally:
        probe.close()
    times = kafka.read_decisions(
        connection, topics.decisions, start[topics.decisions], end[topics.decisions]
    )
    reasons = kafka.read_dead_letter_reasons(
        connection, topics.dead_letter, start[topics.dead_letter], end[topics.dead_letter]
    )
    return saturation_result(
        options.events,
        times.decided_at,
        reasons,
        meter.worker_cpu_s,
        meter.worker_share,
        meter.others_share,
        times.tiers,
        times.batches,
    )


class _TimeUp(Exception):
    """The saturation run reached its time limit."""


@dataclass
class RunningWorker:
    worker: WorkerProcess
    topics: kafka.BenchTopics


def fixed_rates(
    phase: Phase, running: RunningWorker | None, saturation_rate: float | None
) -> tuple[list[FixedRateResult], list[float]]:
    """The rates in ascending order on one warmed-up worker without backlog: `running` when the
    saturation worker finished its events, else a fresh worker on fresh topics. Once a rate is
    not kept up the worker has a backlog and every higher rate would not be kept up either:
    those are skipped (returned second) instead of burning minutes on queues that only grow."""
    options = phase.options
    rates = sorted(options.rates)
    if running is None:
        topics = phase.context.new_topics("r")
        running = RunningWorker(phase.start_worker(topics, "r"), topics)
        with phase.step("worker_start_rates", "Starting a worker for the fixed rates..."):
            running.worker.wait_healthy()
    results: list[FixedRateResult] = []
    try:
        if options.warmup_s > 0:
            # Gentle enough to leave no backlog: at most half what the worker sustained.
            warmup_rate = min(rates[0], 0.5 * saturation_rate) if saturation_rate else rates[0]
            with phase.step("warmup", f"Warm-up at {warmup_rate:,.0f} tx/s..."):
                fixed_rate(phase, running, max(1.0, warmup_rate), options.warmup_s)
        for index, offered in enumerate(rates):
            with phase.step(f"rate_{offered:g}", f"Fixed rate {offered:,.0f} tx/s..."):
                result = fixed_rate(phase, running, offered, options.duration_s)
            results.append(result)
            if not result.kept_up:
                return results, rates[index + 1 :]
    finally:
        running.worker.stop()
    return results, []


def fixed_rate(
    phase: Phase, running: RunningWorker, offered: float, duration_s: float
) -> FixedRateResult:
    """Paced sending, then up to --drain-timeout for the remaining decisions (and dead
    letters: an event the worker rejects is accounted for, not waited for)."""
    connection, topics = phase.context.connection, running.topics
    events = kafka.generate_events(phase.traffic, max(1, round(offered * duration_s)))
    probe = kafka.offset_probe(connection)
    outputs = [topics.decisions, topics.dead_letter]
    try:
        start = [kafka.end_offsets(probe, topic) for topic in outputs]
        meter = CpuMeter(running.worker.cpu_seconds)
        meter.mark()
        paced = kafka.send_paced(phase.producer, topics.transactions, events, offered, duration_s)
        meter.mark()
        drain = phase.options.drain_timeout_s
        kafka.wait_for_records(probe, outputs, start, paced.sent, drain, deadline_s=drain)
        end = [kafka.end_offsets(probe, topic) for topic in outputs]
    finally:
        probe.close()
    times = kafka.read_decisions(connection, topics.decisions, start[0], end[0])
    dead = kafka.records_between(start[1], end[1])
    return fixed_rate_result(
        offered,
        paced.start,
        paced.end,
        paced.sent,
        times.decided_at,
        times.latency_ms,
        meter.worker_share,
        meter.others_share,
        dead_lettered=dead,
        tiers=times.tiers,
        batches=times.batches,
    )


def profile_trial(phase: Phase, topics: kafka.BenchTopics) -> dict[str, Any]:
    """A worker under cProfile in every thread over the same pre-loaded events (its own group,
    Redis prefix and output topics), then its profile summarised."""
    from bench.profile import summarize_profile

    context = phase.context
    trial_topics = topics.with_outputs("p", context.run_id)
    context.topics.create(trial_topics.names())
    out = context.run_dir / "worker.prof"
    with phase.start_worker(trial_topics, "p", profile_out=out) as worker:
        worker.wait_healthy()
        out.with_name(out.name + ".start").touch()  # start-up (imports, model load) left out
        result = saturation(phase, worker, trial_topics)
        out.with_name(out.name + ".stop").touch()
        time.sleep(0.5)  # the marker is polled every 50 ms
        worker.stop()
    if not out.is_file():
        raise FraudScorerError(f"the profiled worker wrote no profile; see {worker.log_path}")
    summary = summarize_profile(out, phase.options.profile_top, result.span_s)
    summary["saturation_under_profiler"] = asdict(result)
    return summary


def bare_loop_baseline(phase: Phase, topics: kafka.BenchTopics) -> BaselineResult:
    from bench.baselines import bare_consume_produce

    sink = f"bench-{phase.context.run_id}-bare-out"
    phase.context.topics.create([sink])
    loop = bare_consume_produce(
        phase.context.connection, topics.transactions, sink, phase.options.events
    )
    return BaselineResult(
        name="bare_kafka_loop",
        description="confluent-kafka consume + produce unchanged, no work, same topic",
        count=loop.count,
        seconds=round(loop.seconds, 3),
        per_s=round(rate(loop.count, loop.seconds), 1),
    )


def http_baseline(phase: Phase) -> BaselineResult:
    from bench.baselines import HttpServer, drive_http

    options, run_dir = phase.options, phase.context.run_dir
    events = kafka.generate_events(phase.traffic, options.http_requests + HTTP_WARMUP_REQUESTS)
    bodies = [orjson.dumps(event) for event in events]
    port = free_port()
    log_path = run_dir / "http-baseline.log"
    server = HttpServer(
        phase.champion.state_dir,
        port,
        options.http_clients,
        options.http_features,
        log_path,
        options.env,
    )
    try:
        server.wait_ready()
        http_run = drive_http(
            port, bodies, options.http_clients, options.http_seconds, HTTP_WARMUP_REQUESTS
        )
    finally:
        server.stop()
    if http_run.errors:
        raise FraudScorerError(
            f"HTTP baseline: {http_run.errors} of {http_run.count} requests failed; see {log_path}"
        )
    return BaselineResult(
        name="http_per_request",
        description=(
            f"Flask, 1 tx per request, gunicorn gthread 1 process, {options.http_clients} "
            f"keep-alive clients, features: {options.http_features}"
        ),
        count=http_run.count,
        seconds=round(http_run.seconds, 3),
        per_s=round(rate(http_run.count, http_run.seconds), 1),
        latency_ms=latency_summary(http_run.latencies_ms),
        details={"features": options.http_features, "clients": options.http_clients},
    )


def write_results(run: BenchRun, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bench-{run.run_id}.json"
    path.write_bytes(orjson.dumps(run.document(), option=orjson.OPT_INDENT_2))
    return path
