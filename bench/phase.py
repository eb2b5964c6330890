"""What the steps of one benchmark run share: the run's record and the step context.

`BenchRun` is what a run measured (its `document()` is the results JSON); `Phase` is what every
step needs (context, record, console, champion, traffic, producer, the pre-loaded events).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from confluent_kafka import Producer
from rich.console import Console

from bench import kafka
from bench.context import BenchContext, BenchOptions
from bench.results import (
    BaselineResult,
    FixedRateResult,
    SaturationResult,
    results_document,
)
from bench.worker import Champion, WorkerProcess, free_port
from simulator.live import LiveTraffic


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
    two_workers: SaturationResult | None = None
    baselines: dict[str, BaselineResult] = field(default_factory=dict)
    profile: dict[str, Any] | None = None
    cprofile: dict[str, Any] | None = None
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
            two_workers=self.two_workers,
            baselines=self.baselines,
            profile=self.profile,
            cprofile=self.cprofile,
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
    preloaded: list[kafka.Payload] = field(default_factory=list)  # the saturation events, encoded
    warm_events: list[dict[str, Any]] | None = None  # --warm-days of history, made once
    warmed: set[str] = field(default_factory=set)  # Redis prefixes loaded with them

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
        """A `fraud worker` of trial `trial`: workers of one trial share a consumer group and a
        Redis prefix, each has its own web port and log."""
        port = free_port()
        env = self.context.worker_env(self.champion.state_dir, topics, trial, port)
        self.warm(self.context.group_name(trial), trial)
        log_path = self.context.run_dir / f"worker-{trial}-{port}.log"
        return WorkerProcess(env, port, log_path, **kwargs)

    def warm(self, prefix: str, trial: str) -> None:
        """With --warm-days: load the feature store of a trial's workers with the bank's last
        days before the live traffic, as `fraud warm-store` loads a production store (card
        histories and terminal windows; no labels), so that the worker reads and writes states
        of a realistic size instead of starting from empty ones. Once per Redis prefix."""
        days = self.options.warm_days
        if not days or prefix in self.warmed:
            return
        began = time.perf_counter()
        if self.warm_events is None:
            self.warm_events = warm_history(
                self.traffic, self.options.seed + 1, days, self.context.run_id
            )
        warm_prefix(self.context, prefix, self.warm_events)
        self.warmed.add(prefix)
        seconds = time.perf_counter() - began
        self.run.timings[f"warm_{trial}"] = seconds
        self.console.log(
            f"Warmed {trial}'s store with {len(self.warm_events):,} transactions "
            f"({days:g} days): {seconds:.1f} s"
        )


def warm_history(traffic: LiveTraffic, seed: int, days: float, run_id: str) -> list[dict[str, Any]]:
    """The bank's transactions of the `days` before `traffic` starts (drawn with `seed`: the
    same customers, cards and terminals), in time order."""
    from simulator.live import iso_timestamp

    start = traffic.start
    history = LiveTraffic(
        traffic.bank, seed=seed, run_id=f"warm-{run_id}", start=start - timedelta(days=days)
    )
    end = iso_timestamp(start.timestamp())
    events: list[dict[str, Any]] = []
    while not events or events[-1]["timestamp"] < end:
        batch, _truths = history.next_batch(20_000, now=0.0)
        events += batch
    return [event for event in events if event["timestamp"] < end]


def warm_prefix(context: BenchContext, prefix: str, events: list[dict[str, Any]]) -> None:
    from stream.features import RedisFeatureStore, load_events

    store = RedisFeatureStore(
        context.redis, prefix, label_delay=timedelta(days=context.settings.label_delay_days)
    )
    load_events(store, events)


@dataclass
class RunningWorker:
    worker: WorkerProcess
    topics: kafka.BenchTopics
