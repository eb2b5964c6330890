"""Benchmark arithmetic and the results document: pure functions over plain numbers.

The end-to-end benchmark (`bench/run.py`) measures; this module turns what it measured into
rates, latency percentiles, ratios and target checks, and into the JSON written to
bench-results/. Nothing here touches Kafka, Redis or the clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

RESULTS_SCHEMA = "fraud-bench/2"
# The targets for one worker.
TARGET_DECISIONS_PER_S = 10_000.0
TARGET_VS_FAUST = 1.0  # times the Faust consume-only agent's rate, same run
TARGET_VS_HTTP = 20.0  # times the one-request-per-transaction HTTP design, same run
TARGET_P99_MS = {2_000.0: 50.0, 5_000.0: 100.0}  # offered tx/s -> p99 ms, kept up
# A fixed rate is kept up when its events were all decided and at least this share of the
# offered rate was decided inside the sending window (a worker slower than the offered rate
# can still drain a short run's backlog within the drain limit).
KEPT_UP_SHARE = 0.9
FAUST_CONSUME_ONLY = "faust_consume_only"
HTTP_PER_REQUEST = "http_per_request"
BARE_KAFKA_LOOP = "bare_kafka_loop"


def rate(count: int, seconds: float) -> float:
    """Events per second; 0 when nothing was timed."""
    return count / seconds if seconds > 0 else 0.0


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is zero."""
    return numerator / denominator if numerator is not None and denominator else None


def per_1000(seconds: float | None, count: int | None) -> float | None:
    """CPU seconds per 1,000 events, or None when nothing was counted or metered."""
    return round(seconds / count * 1000, 4) if seconds is not None and count else None


@dataclass(frozen=True)
class CpuReading:
    """CPU between two samples: the process(es) under test, and every other process.

    `outputs`: events finished (decisions and dead letters) between the same two samples, when
    known, so that CPU per event is counted over the same interval as the CPU."""

    wall_s: float
    worker_cpu_s: float | None
    others_cpu_s: float | None
    outputs: int | None = None

    @property
    def worker_share(self) -> float | None:
        """Cores the worker kept busy on average (CPU seconds per wall second)."""
        return _per_wall(self.worker_cpu_s, self.wall_s)

    @property
    def others_share(self) -> float | None:
        return _per_wall(self.others_cpu_s, self.wall_s)


def _per_wall(cpu_s: float | None, wall_s: float) -> float | None:
    return None if cpu_s is None or wall_s <= 0 else round(cpu_s / wall_s, 3)


@dataclass(frozen=True)
class LatencySummary:
    """Latency percentiles in milliseconds (linear interpolation between ranks, as numpy)."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float


def latency_summary(values_ms: Sequence[float]) -> LatencySummary | None:
    """p50/p95/p99/max/mean of `values_ms`, or None for no values."""
    if len(values_ms) == 0:
        return None
    values = np.asarray(values_ms, dtype=float)
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return LatencySummary(
        count=len(values),
        p50=round(float(p50), 3),
        p95=round(float(p95), 3),
        p99=round(float(p99), 3),
        max=round(float(values.max()), 3),
        mean=round(float(values.mean()), 3),
    )


@dataclass(frozen=True)
class Span:
    """Decisions per second from the first to the last decision instant.

    Decisions carry the instant their micro-batch was decided (`decided_at`), so the first
    instant closes the first batch: only decisions after it fall inside the timed span.
    """

    decided: int
    counted: int
    seconds: float
    first: float
    last: float

    @property
    def rate(self) -> float:
        return rate(self.counted, self.seconds)


def decision_span(decided_at: Sequence[float]) -> Span:
    """The span of epoch-second `decided_at` instants (any order)."""
    if len(decided_at) == 0:
        return Span(0, 0, 0.0, 0.0, 0.0)
    times = np.asarray(decided_at, dtype=float)
    first, last = float(times.min()), float(times.max())
    counted = int(np.count_nonzero(times > first))
    return Span(len(times), counted, last - first, first, last)


def shares(counts: Mapping[str, int]) -> dict[str, float]:
    """Each key's share of the total, rounded to 0.1 %."""
    total = sum(counts.values())
    return {key: round(value / total, 3) for key, value in sorted(counts.items())} if total else {}


def mean_batch(decisions: int, batches: int) -> float | None:
    return round(decisions / batches, 1) if batches else None


def count_within(times: Sequence[float], start: float, end: float) -> int:
    """How many instants fall in [start, end]."""
    values = np.asarray(times, dtype=float)
    return int(np.count_nonzero((values >= start) & (values <= end)))


# --- results ---------------------------------------------------------------------------


@dataclass
class SaturationResult:
    """Pre-loaded events, worker(s) started afterwards: first to last decision."""

    events: int
    decided: int
    dead_lettered: int
    span_s: float
    decisions_per_s: float
    workers: int = 1
    worker_cpu_s: float | None = None
    # CPU seconds per wall second over the span: the worker's, and every other process's.
    worker_cpu_share: float | None = None
    others_cpu_share: float | None = None
    decisions_per_worker_cpu_s: float | None = None
    # CPU seconds per 1,000 decisions (dead letters included): the worker('s processes), and
    # every other process on the machine (broker, Redis, the benchmark itself, anyone else).
    worker_cpu_s_per_1000: float | None = None
    others_cpu_s_per_1000: float | None = None
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    decision_shares: dict[str, float] = field(default_factory=dict)
    mean_batch_size: float | None = None  # decisions per distinct decided_at instant
    complete: bool = True  # False: stopped at the time limit before every event was decided
    note: str = ""


# Per stage of the worker's fraud_batch_stage_seconds histogram: (upper bound, cumulative count)
# of each bucket, +Inf last.
StageBuckets = dict[str, list[tuple[float, float]]]


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus's histogram_quantile over cumulative buckets: linear inside the bucket that
    holds the q-th observation; the highest finite bound when it falls in +Inf."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            inside = count - lower_count
            share = (rank - lower_count) / inside if inside > 0 else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def stage_summary(before: StageBuckets, after: StageBuckets) -> dict[str, dict[str, float | None]]:
    """Per batch stage, between two scrapes of the worker: batches, p50 and p99 in ms."""
    summary: dict[str, dict[str, float | None]] = {}
    for stage, buckets in after.items():
        earlier = dict(before.get(stage, []))
        delta = [(bound, count - earlier.get(bound, 0.0)) for bound, count in buckets]
        p50, p99 = histogram_quantile(0.5, delta), histogram_quantile(0.99, delta)
        summary[stage] = {
            "batches": delta[-1][1] if delta else 0.0,
            "p50_ms": None if p50 is None else round(p50 * 1000, 1),
            "p99_ms": None if p99 is None else round(p99 * 1000, 1),
        }
    return summary


@dataclass
class FixedRateResult:
    """A paced producer for `duration_s`; latency from the decisions' latency_ms."""

    offered_rate: float
    achieved_offered_rate: float
    duration_s: float
    sent: int
    decided: int
    decided_in_window: int
    decisions_per_s: float
    latency_ms: LatencySummary | None
    drain_s: float | None  # last decision after the last send
    worker_cpu_share: float | None = None
    others_cpu_share: float | None = None
    worker_cpu_s_per_1000: float | None = None
    others_cpu_s_per_1000: float | None = None
    dead_lettered: int = 0
    decision_shares: dict[str, float] = field(default_factory=dict)
    mean_batch_size: float | None = None
    complete: bool = True  # False: not every event was decided within the drain limit
    kept_up: bool = True
    # Per batch stage (fetch_wait, deciding, delivery) from the worker's own histogram.
    batch_stages: dict[str, dict[str, float | None]] = field(default_factory=dict)


@dataclass
class BaselineResult:
    name: str
    description: str
    count: int
    seconds: float
    per_s: float
    latency_ms: LatencySummary | None = None
    cpu_s_per_1000: float | None = None  # the baseline's own process, when metered
    details: dict[str, Any] = field(default_factory=dict)


def saturation_result(
    events: int,
    decided_at: Sequence[float],
    dead_letter_reasons: Mapping[str, int],
    cpu: CpuReading | None = None,
    tiers: Mapping[str, int] | None = None,
    batches: int = 0,
    workers: int = 1,
    note: str = "",
) -> SaturationResult:
    """CPU per 1,000 decisions counts the outputs between the CPU samples (`cpu.outputs`), or
    the decisions after the first batch when those were not counted."""
    span = decision_span(decided_at)
    dead = sum(dead_letter_reasons.values())
    outputs = span.counted if cpu is None or cpu.outputs is None else cpu.outputs
    worker_cpu = None if cpu is None else cpu.worker_cpu_s
    return SaturationResult(
        events=events,
        decided=span.decided,
        dead_lettered=dead,
        span_s=round(span.seconds, 3),
        decisions_per_s=round(span.rate, 1),
        workers=workers,
        worker_cpu_s=None if worker_cpu is None else round(worker_cpu, 3),
        worker_cpu_share=None if cpu is None else cpu.worker_share,
        others_cpu_share=None if cpu is None else cpu.others_share,
        decisions_per_worker_cpu_s=round(outputs / worker_cpu, 1) if worker_cpu else None,
        worker_cpu_s_per_1000=per_1000(worker_cpu, outputs),
        others_cpu_s_per_1000=per_1000(None if cpu is None else cpu.others_cpu_s, outputs),
        dead_letter_reasons=dict(dead_letter_reasons),
        decision_shares=shares(tiers or {}),
        mean_batch_size=mean_batch(span.decided, batches),
        complete=span.decided + dead >= events,
        note=note,
    )


def fixed_rate_result(
    offered_rate: float,
    send_start: float,
    send_end: float,
    sent: int,
    decided_at: Sequence[float],
    latencies_ms: Sequence[float],
    cpu: CpuReading | None = None,
    dead_lettered: int = 0,
    tiers: Mapping[str, int] | None = None,
    batches: int = 0,
    batch_stages: Mapping[str, dict[str, float | None]] | None = None,
) -> FixedRateResult:
    """Sustained decisions/s = decisions decided inside the sending window / its length; the
    CPU, sampled at the window's ends, is per decision decided inside it."""
    window = send_end - send_start
    inside = count_within(decided_at, send_start, send_end)
    complete = len(decided_at) + dead_lettered >= sent
    last = max(decided_at) if len(decided_at) else None
    return FixedRateResult(
        offered_rate=offered_rate,
        achieved_offered_rate=round(rate(sent, window), 1),
        duration_s=round(window, 3),
        sent=sent,
        decided=len(decided_at),
        decided_in_window=inside,
        decisions_per_s=round(rate(inside, window), 1),
        latency_ms=latency_summary(latencies_ms),
        drain_s=None if last is None else round(max(0.0, last - send_end), 3),
        worker_cpu_share=None if cpu is None else cpu.worker_share,
        others_cpu_share=None if cpu is None else cpu.others_share,
        worker_cpu_s_per_1000=per_1000(None if cpu is None else cpu.worker_cpu_s, inside),
        others_cpu_s_per_1000=per_1000(None if cpu is None else cpu.others_cpu_s, inside),
        dead_lettered=dead_lettered,
        decision_shares=shares(tiers or {}),
        mean_batch_size=mean_batch(len(decided_at), batches),
        complete=complete,
        kept_up=complete and inside + dead_lettered >= KEPT_UP_SHARE * sent,
        batch_stages=dict(batch_stages or {}),
    )


def consume_only_result(meter: Mapping[str, Any], description: str) -> BaselineResult:
    """The Faust consume-only agent's meter (bench/faust_agent.py) as a baseline, counted as the
    worker is: events after the first batch, from the end of the first batch to the last."""
    first, last = meter.get("first_batch_at"), meter.get("last_batch_at")
    counted = int(meter.get("events", 0)) - int(meter.get("first_batch_events", 0))
    seconds = last - first if first is not None and last is not None else 0.0
    cpu_first, cpu_last = meter.get("cpu_s_at_first"), meter.get("cpu_s_at_last")
    cpu = cpu_last - cpu_first if cpu_first is not None and cpu_last is not None else None
    return BaselineResult(
        name=FAUST_CONSUME_ONLY,
        description=description,
        count=counted,
        seconds=round(seconds, 3),
        per_s=round(rate(counted, seconds), 1),
        cpu_s_per_1000=per_1000(cpu, counted),
        details={
            "events": meter.get("events", 0),
            "batches": meter.get("batches", 0),
            "complete": bool(meter.get("complete", False)),
        },
    )


def ratios(
    saturation: SaturationResult | None,
    baselines: Mapping[str, BaselineResult],
    two_workers: SaturationResult | None = None,
) -> dict[str, float | None]:
    """The worker's saturation rate over each baseline's rate (x times faster when > 1), the
    same per CPU-second where both were metered (on a shared machine each gets what the others
    leave, so the wall-clock ratio moves with the load and this one much less), and two
    workers' rate over one's."""
    if saturation is None:
        return {}
    found: dict[str, float | None] = {}
    for name, result in baselines.items():
        found[f"worker_vs_{name}"] = _rounded(ratio(saturation.decisions_per_s, result.per_s))
        if result.cpu_s_per_1000 is not None and saturation.worker_cpu_s_per_1000 is not None:
            found[f"worker_vs_{name}_per_cpu_s"] = _rounded(
                ratio(result.cpu_s_per_1000, saturation.worker_cpu_s_per_1000)
            )
    if two_workers is not None:
        found["two_workers_vs_one"] = _rounded(
            ratio(two_workers.decisions_per_s, saturation.decisions_per_s)
        )
    return found


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass(frozen=True)
class TargetCheck:
    name: str
    label: str
    target: float
    measured: float | None
    met: bool | None  # None: not measured in this run
    note: str = ""


def target_checks(
    saturation: SaturationResult | None,
    fixed: Sequence[FixedRateResult],
    baselines: Mapping[str, BaselineResult] | None = None,
    skipped_rates: Sequence[float] = (),
) -> list[TargetCheck]:
    """The issue's targets. A rate not kept up has no meaningful p99: it misses; so does a rate
    skipped because a lower one was not kept up."""
    baselines = baselines or {}
    throughput = saturation.decisions_per_s if saturation else None
    checks = [
        TargetCheck(
            "decisions_per_s",
            f"decisions/s, one worker (target >= {TARGET_DECISIONS_PER_S:,.0f})",
            TARGET_DECISIONS_PER_S,
            throughput,
            None if throughput is None else throughput >= TARGET_DECISIONS_PER_S,
        )
    ]
    for name, label, target in (
        (FAUST_CONSUME_ONLY, "worker / Faust consume-only agent", TARGET_VS_FAUST),
        (HTTP_PER_REQUEST, "worker / one HTTP request per transaction", TARGET_VS_HTTP),
    ):
        baseline = baselines.get(name)
        measured = _rounded(ratio(throughput, baseline.per_s if baseline else None))
        checks.append(
            TargetCheck(
                f"vs_{name}",
                f"{label} (target >= {target:g}x)",
                target,
                measured,
                None if measured is None else measured >= target,
            )
        )
    for offered, limit in TARGET_P99_MS.items():
        label = f"p99 ms at {offered:,.0f} tx/s, kept up (target < {limit:g})"
        at_rate = next((r for r in fixed if r.offered_rate == offered), None)
        if at_rate is None:
            skipped = offered in skipped_rates
            checks.append(
                TargetCheck(
                    f"p99_at_{offered:g}",
                    label,
                    limit,
                    None,
                    False if skipped else None,
                    "skipped: a lower offered rate was already not kept up" if skipped else "",
                )
            )
            continue
        p99 = at_rate.latency_ms.p99 if at_rate.latency_ms else None
        checks.append(
            TargetCheck(
                f"p99_at_{offered:g}",
                label,
                limit,
                p99,
                bool(p99 is not None and p99 < limit and at_rate.kept_up),
                "" if at_rate.kept_up else "not kept up",
            )
        )
    return checks


def results_document(
    *,
    run_id: str,
    started_at: str,
    finished_at: str,
    machine: Mapping[str, Any],
    versions: Mapping[str, Any],
    settings: Mapping[str, Any],
    saturation: SaturationResult | None,
    fixed: Sequence[FixedRateResult],
    baselines: Mapping[str, BaselineResult],
    skipped_rates: Sequence[float] = (),
    two_workers: SaturationResult | None = None,
    profile: Mapping[str, Any] | None = None,
    cprofile: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON written to bench-results/ (plain types only)."""
    return {
        "schema": RESULTS_SCHEMA,
        "run_id": run_id,
        "started_at": started_at,
        "finished_at": finished_at,
        "machine": dict(machine),
        "versions": dict(versions),
        "settings": dict(settings),
        "worker": {
            "saturation": None if saturation is None else asdict(saturation),
            "fixed_rates": [asdict(r) for r in fixed],
            "skipped_rates": list(skipped_rates),
            "two_workers": None if two_workers is None else asdict(two_workers),
        },
        "baselines": {name: asdict(result) for name, result in baselines.items()},
        "ratios": ratios(saturation, baselines, two_workers),
        "targets": [
            asdict(check) for check in target_checks(saturation, fixed, baselines, skipped_rates)
        ],
        "profile": None if profile is None else dict(profile),
        "cprofile": None if cprofile is None else dict(cprofile),
    }
