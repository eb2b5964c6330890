"""End-to-end benchmark of the scoring worker on the real broker and Redis (`fraud bench`).

    fraud bench                                  # ~8 minutes: 100k events, 1k/2k/5k tx/s
    fraud bench --events 30000 --rates 1000,2000 --duration 8 --state-dir bench-results/state

One run, in this order, on private topics (deleted afterwards) and private Redis prefixes:
1. a champion: reused from --state-dir, else a small one trained into a private MLflow store;
2. N live events pre-loaded onto a transactions topic (encoded once, kept for step 7);
3. ceilings over that topic (`bench/ceilings.py`): the bare confluent-kafka consume -> produce
   loop, and the Faust consume-only agent (the worker's old per-event consumption pattern);
4. saturation: a worker started on the pre-loaded topic; decisions/s from its first to its
   last decision (`decided_at`), so start-up is excluded; CPU-seconds per 1,000 decisions of
   the worker and of every other process (`bench/trials.py`);
5. fixed rates (ascending) on a warmed-up worker without backlog (the saturation worker when
   it finished its events, else a fresh one), fed by a paced producer for --duration seconds
   per rate; latency percentiles from the decisions' `latency_ms` (decided_at - the record's
   Kafka timestamp, set when sent). After a rate not kept up, the higher rates are skipped;
6. the lab's one-request-per-transaction HTTP design with the same model (`bench/ceilings.py`);
7. two workers in one group on fresh topics, the same events sent again once the group is
   stable (--two-workers);
8. a worker over the pre-loaded topic sampled by py-spy (--profile; `bench/profile_trials.py`),
   and/or under cProfile (--cprofile);
then tables, the in-run ratios, the targets, and bench-results/bench-<run>.json. A ceiling or
trial that fails is reported as an error in the results instead of discarding the rest.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import orjson
from confluent_kafka import KafkaException
from rich.console import Console

from bench import kafka
from bench.context import (
    BenchContext,
    BenchOptions,
    load_average,
    machine_info,
    versions,
)
from bench.phase import BenchRun, Phase, RunningWorker
from bench.results import BaselineResult
from bench.worker import prepare_champion
from fraud.errors import FraudScorerError
from fraud.settings import Settings
from fraud.times import utc_now_iso
from simulator.live import LiveTraffic

T = TypeVar("T")


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
    from bench import ceilings, profile_trials, trials
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
        phase.preloaded = kafka.encode(kafka.generate_events(traffic, options.events))
        kafka.preload(phase.producer, topics.transactions, phase.preloaded)
    if options.baselines:
        _optional(
            phase,
            "bare_loop",
            "Ceiling: bare consume-and-produce loop...",
            lambda: _baseline(run, ceilings.bare_loop(phase, topics)),
        )
        _optional(
            phase,
            "faust_consume_only",
            "Ceiling: Faust consume-only agent...",
            lambda: _baseline(run, ceilings.faust_consume_only(phase, topics)),
        )
    start = trials.output_offsets(phase, topics)
    worker = phase.start_worker(topics, "s")
    try:
        with phase.step("worker_start", "Starting the worker..."):
            worker.wait_healthy()
        with phase.step("saturation", f"Saturation over {options.events:,} events..."):
            run.saturation = trials.saturation(phase, worker, topics, start)
    except BaseException:
        worker.stop()
        raise
    running: RunningWorker | None = RunningWorker(worker, topics)
    if not run.saturation.complete:  # a backlog is left: the fixed rates need a fresh worker
        worker.stop()
        running = None
    run.fixed, run.skipped_rates = trials.fixed_rates(
        phase, running, run.saturation.decisions_per_s
    )
    if options.baselines:
        _optional(
            phase,
            "http",
            "Ceiling: one HTTP request per transaction...",
            lambda: _baseline(run, ceilings.http_per_request(phase)),
        )
    if options.two_workers:
        run.two_workers = _optional(
            phase, "two_workers", "Two workers in one group...", lambda: trials.two_workers(phase)
        )
    if options.profile:
        run.profile = _optional(
            phase,
            "profile",
            "Sampling a worker with py-spy...",
            lambda: profile_trials.sampling_profile(phase, topics),
        )
    if options.cprofile:
        run.cprofile = _optional(
            phase,
            "cprofile",
            "Profiling a worker under cProfile...",
            lambda: profile_trials.cprofile_trial(phase, topics),
        )


def _baseline(run: BenchRun, result: BaselineResult) -> BaselineResult:
    run.baselines[result.name] = result
    return result


def _optional(phase: Phase, name: str, text: str, measure: Callable[[], T]) -> T | None:
    """A step whose failure is recorded as an error of the run instead of ending it."""
    try:
        with phase.step(name, text):
            return measure()
    except (FraudScorerError, KafkaException) as exc:
        phase.console.print(f"[red]{name} failed: {exc}[/red]")
        phase.run.errors.append(f"{name}: {exc}")
        return None


def write_results(run: BenchRun, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bench-{run.run_id}.json"
    path.write_bytes(orjson.dumps(run.document(), option=orjson.OPT_INDENT_2))
    return path
