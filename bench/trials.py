"""The worker's trials: saturation over pre-loaded events, fixed offered rates, two workers.

Saturation: decisions/s from the first to the last decision instant (`decided_at`), so
start-up is left out; capped at --saturation-timeout after the first output. Fixed rates:
ascending, on one warmed-up worker without backlog; sustained decisions/s inside the sending
window and latency percentiles from the decisions' `latency_ms`. Two workers: two `fraud
worker` processes in one group on fresh topics; once the group is stable with both holding
partitions, the same pre-loaded events are sent again (encoded beforehand, so sending takes a
fraction of a second) and counted as the one-worker saturation is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from bench import kafka
from bench.phase import Phase, RunningWorker
from bench.results import (
    CpuReading,
    FixedRateResult,
    SaturationResult,
    fixed_rate_result,
    saturation_result,
    stage_summary,
)
from bench.worker import CpuMeter, WorkerProcess, cpu_seconds_of


class _TimeUp(Exception):
    """The saturation run reached its time limit."""


@dataclass(frozen=True)
class Outputs:
    """Where a trial's outputs began and ended on the decisions and dead-letter topics, and the
    CPU while they were written."""

    start: dict[str, kafka.Offsets]
    end: dict[str, kafka.Offsets]
    cpu: CpuReading | None


def output_offsets(phase: Phase, topics: kafka.BenchTopics) -> dict[str, kafka.Offsets]:
    """The end offsets of the decisions and dead-letter topics now."""
    probe = kafka.offset_probe(phase.context.connection)
    try:
        return {t: kafka.end_offsets(probe, t) for t in (topics.decisions, topics.dead_letter)}
    finally:
        probe.close()


def wait_for_outputs(
    phase: Phase,
    topics: kafka.BenchTopics,
    expected: int,
    read_cpu: Callable[[], float | None],
    start: dict[str, kafka.Offsets] | None = None,
) -> Outputs:
    """Wait until `expected` outputs (decisions or dead letters) arrived after `start` (default:
    now), none arrived for a minute, or --saturation-timeout passed after the first one."""
    options, connection = phase.options, phase.context.connection
    start = output_offsets(phase, topics) if start is None else start
    probe = kafka.offset_probe(connection)
    try:
        meter = CpuMeter(read_cpu)
        first_output: list[float] = []

        def on_poll(count: int) -> None:
            meter.observe(count)
            if count and not first_output:
                first_output.append(time.monotonic())
            if first_output and time.monotonic() - first_output[0] > options.saturation_timeout_s:
                raise _TimeUp

        try:
            kafka.wait_for_records(
                probe, list(start), list(start.values()), expected, 60.0, on_poll
            )
        except _TimeUp:
            pass
        end = {t: kafka.end_offsets(probe, t) for t in start}
    finally:
        probe.close()
    return Outputs(start, end, meter.reading())


def read_saturation(
    phase: Phase,
    topics: kafka.BenchTopics,
    outputs: Outputs,
    events: int,
    workers: int = 1,
    note: str = "",
) -> SaturationResult:
    connection = phase.context.connection
    decisions, dead = topics.decisions, topics.dead_letter
    times = kafka.read_decisions(
        connection, decisions, outputs.start[decisions], outputs.end[decisions]
    )
    reasons = kafka.read_dead_letter_reasons(
        connection, dead, outputs.start[dead], outputs.end[dead]
    )
    return saturation_result(
        events, times.decided_at, reasons, outputs.cpu, times.tiers, times.batches, workers, note
    )


def saturation(
    phase: Phase,
    worker: WorkerProcess,
    topics: kafka.BenchTopics,
    start: dict[str, kafka.Offsets] | None = None,
) -> SaturationResult:
    """Every pre-loaded event's decision (or dead letter), then the decision instants. `start`:
    the output offsets read before the worker started (it decides before it reports healthy)."""
    events = phase.options.events
    outputs = wait_for_outputs(phase, topics, events, worker.cpu_seconds, start)
    return read_saturation(phase, topics, outputs, events)


def two_workers(phase: Phase) -> SaturationResult:
    """Two workers in one group split the partitions; the pre-loaded events are sent again once
    the group is stable, and counted from the first decision to the last."""
    context = phase.context
    topics = context.new_topics("w2")
    workers: list[WorkerProcess] = []
    try:
        workers = [phase.start_worker(topics, "w2") for _ in range(2)]
        for worker in workers:
            worker.wait_healthy()
        group = context.group_name("w2")
        kafka.wait_for_group(
            context.connection, group, topics.transactions, 2, phase.options.partitions, 120.0
        )
        start = output_offsets(phase, topics)  # before sending: the workers decide at once
        sent_s = kafka.preload(phase.producer, topics.transactions, phase.preloaded)
        read_cpu = cpu_seconds_of(workers)
        outputs = wait_for_outputs(phase, topics, len(phase.preloaded), read_cpu, start)
    finally:
        for worker in workers:
            worker.stop()
    note = (
        f"events sent again once the group was stable (sending took {sent_s:.2f} s); "
        "CPU: both workers"
    )
    behind = kafka.committed_lag(context.connection, group, topics.transactions)
    if behind:
        note += f"; after both stopped, {behind:,} events beyond the committed offsets"
    return read_saturation(phase, topics, outputs, len(phase.preloaded), 2, note)


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
        stages_before = running.worker.batch_stages()
        meter.mark()
        paced = kafka.send_paced(phase.producer, topics.transactions, events, offered, duration_s)
        meter.mark()
        drain = phase.options.drain_timeout_s
        kafka.wait_for_records(probe, outputs, start, paced.sent, drain, deadline_s=drain)
        end = [kafka.end_offsets(probe, topic) for topic in outputs]
        stages_after = running.worker.batch_stages()
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
        meter.reading(),
        dead_lettered=dead,
        tiers=times.tiers,
        batches=times.batches,
        batch_stages=stage_summary(stages_before, stages_after),
    )


def decisions_so_far(phase: Phase, topics: kafka.BenchTopics) -> int:
    """Records on the decisions topic now: a counter read at both ends of a recording window."""
    probe = kafka.offset_probe(phase.context.connection)
    try:
        return sum(kafka.end_offsets(probe, topics.decisions).values())
    finally:
        probe.close()
