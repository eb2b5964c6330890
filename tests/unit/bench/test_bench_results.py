"""Benchmark arithmetic and the results document (bench/results.py, bench/report.py)."""

from __future__ import annotations

import io

import orjson
import pytest
from rich.console import Console

from bench.report import render
from bench.results import (
    RESULTS_SCHEMA,
    BaselineResult,
    CpuReading,
    consume_only_result,
    count_within,
    decision_span,
    fixed_rate_result,
    latency_summary,
    mean_batch,
    per_1000,
    rate,
    ratio,
    ratios,
    results_document,
    saturation_result,
    shares,
    target_checks,
)


def _checks(checks: list) -> dict:
    return {check.name: check for check in checks}


def test_latency_percentiles_interpolate_between_ranks():
    summary = latency_summary([float(v) for v in range(1, 101)])
    assert summary is not None
    assert (summary.count, summary.p50, summary.p95, summary.p99) == (100, 50.5, 95.05, 99.01)
    assert (summary.max, summary.mean) == (100.0, 50.5)


def test_latency_of_one_value_and_of_none():
    one = latency_summary([7.25])
    assert one is not None and one.p50 == one.p99 == one.max == 7.25
    assert latency_summary([]) is None


def test_rate_ratio_and_per_1000_guard_against_zero_and_missing():
    assert rate(1_000, 2.0) == 500.0
    assert rate(1_000, 0.0) == 0.0
    assert ratio(3_000.0, 1_500.0) == 2.0
    assert ratio(3_000.0, 0.0) is None
    assert ratio(None, 1_500.0) is None
    assert per_1000(2.5, 10_000) == 0.25
    assert per_1000(2.5, 0) is None
    assert per_1000(None, 10_000) is None


def test_cpu_reading_shares_per_wall_second():
    reading = CpuReading(wall_s=4.0, worker_cpu_s=3.0, others_cpu_s=2.0, outputs=8_000)
    assert (reading.worker_share, reading.others_share) == (0.75, 0.5)
    assert CpuReading(0.0, 3.0, None).worker_share is None
    assert CpuReading(4.0, 3.0, None).others_share is None


def test_span_counts_only_decisions_after_the_first_batch():
    # Three micro-batches of 500, decided at t=10.0, 10.5 and 11.0 s.
    instants = [10.0] * 500 + [10.5] * 500 + [11.0] * 500
    span = decision_span(instants[::-1])  # order does not matter
    assert (span.decided, span.counted, span.seconds) == (1_500, 1_000, 1.0)
    assert span.rate == 1_000.0
    assert decision_span([]).rate == 0.0
    assert decision_span([5.0] * 10).rate == 0.0  # one batch: no span to time


def test_count_within_includes_both_ends():
    assert count_within([0.9, 1.0, 1.5, 2.0, 2.1], 1.0, 2.0) == 3


def test_fixed_rate_counts_decisions_and_cpu_inside_the_sending_window():
    # 100 events sent over 10 s; 80 decided inside the window, 20 in the 3 s after it.
    decided = [100.0 + i * 0.125 for i in range(80)] + [110.5] * 10 + [113.0] * 10
    cpu = CpuReading(wall_s=10.0, worker_cpu_s=4.0, others_cpu_s=12.0)
    result = fixed_rate_result(10.0, 100.0, 110.0, 100, decided, [20.0] * 100, cpu)
    assert result.decided_in_window == 80
    assert result.decisions_per_s == 8.0
    assert result.achieved_offered_rate == 10.0
    assert result.drain_s == 3.0
    assert result.complete
    assert result.latency_ms is not None and result.latency_ms.p99 == 20.0
    assert (result.worker_cpu_share, result.others_cpu_share) == (0.4, 1.2)
    assert result.worker_cpu_s_per_1000 == 50.0  # 4 CPU-s over 80 decisions
    assert result.others_cpu_s_per_1000 == 150.0


def test_a_rate_drained_late_is_complete_but_not_kept_up():
    # Every event decided, but 40 of 100 only after the window: the worker was too slow.
    decided = [100.0 + i * 0.1 for i in range(60)] + [115.0] * 40
    result = fixed_rate_result(2_000.0, 100.0, 110.0, 100, decided, [1.0] * 100)
    assert result.complete
    assert not result.kept_up
    check = _checks(target_checks(None, [result]))["p99_at_2000"]
    assert check.met is False and check.measured == 1.0 and check.note == "not kept up"


def test_fixed_rate_is_incomplete_when_decisions_are_missing_but_dead_letters_count():
    decided = [100.0 + i * 0.1 for i in range(90)]
    incomplete = fixed_rate_result(10.0, 100.0, 110.0, 100, decided, [1.0] * 90)
    assert not incomplete.complete and not incomplete.kept_up
    assert fixed_rate_result(
        10.0, 100.0, 110.0, 100, decided, [1.0] * 90, dead_lettered=10
    ).complete


def test_shares_and_mean_batch_size():
    assert shares({"review": 1, "approve": 3}) == {"approve": 0.75, "review": 0.25}
    assert shares({}) == {}
    assert mean_batch(1_000, 8) == 125.0
    assert mean_batch(10, 0) is None


def test_saturation_result_rates_per_wall_and_cpu_per_1000_over_the_metered_outputs():
    instants = [0.0] * 500 + [1.0] * 500 + [2.0] * 500
    tiers = {"approve": 1_200, "review": 300}
    # 1,250 outputs between the CPU samples: 4 worker CPU-s, 2 CPU-s of everything else.
    cpu = CpuReading(wall_s=2.0, worker_cpu_s=4.0, others_cpu_s=2.0, outputs=1_250)
    result = saturation_result(1_501, instants, {"card_number": 1}, cpu, tiers, 3)
    assert result.decisions_per_s == 500.0  # 1,000 decided after the first batch, over 2 s
    assert result.decisions_per_worker_cpu_s == 312.5
    assert result.worker_cpu_s_per_1000 == 3.2
    assert result.others_cpu_s_per_1000 == 1.6
    assert (result.worker_cpu_share, result.others_cpu_share) == (2.0, 1.0)
    assert result.dead_lettered == 1
    assert result.decision_shares == {"approve": 0.8, "review": 0.2}
    assert result.mean_batch_size == 500.0
    assert result.complete and result.workers == 1
    assert not saturation_result(2_000, instants, {}).complete


def test_saturation_cpu_per_1000_falls_back_to_the_decisions_after_the_first_batch():
    instants = [0.0] * 500 + [1.0] * 500 + [2.0] * 500
    result = saturation_result(1_500, instants, {}, CpuReading(2.0, 4.0, None), workers=2)
    assert result.worker_cpu_s_per_1000 == 4.0  # 4 CPU-s over the 1,000 counted decisions
    assert result.others_cpu_s_per_1000 is None
    assert result.workers == 2


def test_consume_only_agent_is_counted_as_the_worker_from_its_first_batch():
    meter = {
        "expect": 10_000,
        "events": 10_000,
        "batches": 20,
        "first_batch_events": 500,
        "first_batch_at": 100.0,
        "last_batch_at": 102.0,
        "cpu_s_at_first": 5.0,
        "cpu_s_at_last": 6.9,
        "complete": True,
    }
    result = consume_only_result(meter, "agent")
    assert (result.name, result.count, result.seconds) == ("faust_consume_only", 9_500, 2.0)
    assert result.per_s == 4_750.0
    assert result.cpu_s_per_1000 == 0.2
    assert result.details == {"events": 10_000, "batches": 20, "complete": True}
    nothing = consume_only_result({}, "agent")
    assert (nothing.per_s, nothing.cpu_s_per_1000, nothing.details["complete"]) == (
        0.0,
        None,
        False,
    )


def _baselines(faust_rate: float = 6_000.0) -> dict[str, BaselineResult]:
    return {
        "http_per_request": BaselineResult("http_per_request", "one per request", 600, 2.0, 300.0),
        "bare_kafka_loop": BaselineResult("bare_kafka_loop", "no work", 100_000, 1.0, 100_000.0),
        "faust_consume_only": BaselineResult(
            "faust_consume_only", "agent", 60_000, 10.0, faust_rate, cpu_s_per_1000=0.15
        ),
    }


def _document(p99_at_2000: float, p99_at_5000: float = 80.0) -> dict:
    instants = [0.0] * 100 + [1.0] * 12_000
    cpu = CpuReading(1.0, 1.2, 0.1, 12_000)
    saturation = saturation_result(len(instants), instants, {}, cpu)
    two = saturation_result(len(instants), [0.0] * 100 + [0.5] * 12_000, {}, workers=2)
    fixed = [
        fixed_rate_result(2_000.0, 0.0, 1.0, 2_000, [0.5] * 2_000, [p99_at_2000] * 2_000),
        fixed_rate_result(5_000.0, 0.0, 1.0, 5_000, [0.5] * 5_000, [p99_at_5000] * 5_000),
    ]
    return results_document(
        run_id="r1",
        started_at="2026-01-01T00:00:00Z",
        finished_at="2026-01-01T00:05:00Z",
        machine={"cores": 2, "cpu": "test", "load_average_at_start": [1.0, 1.0, 1.0]},
        versions={"python": "3.11"},
        settings={
            "events": len(instants),
            "rates": [2_000.0, 5_000.0],
            "duration_s": 1.0,
            "warmup_s": 0.0,
            "partitions": 4,
            "customers": 10,
            "worker_batch_size": 500,
            "worker_batch_within_s": 0.02,
        },
        saturation=saturation,
        fixed=fixed,
        baselines=_baselines(),
        two_workers=two,
    )


def test_results_document_shape_ratios_and_targets():
    document = _document(p99_at_2000=40.0)
    assert document["schema"] == RESULTS_SCHEMA
    assert set(document) >= {"machine", "versions", "settings", "worker", "baselines", "ratios"}
    assert document["worker"]["saturation"]["decisions_per_s"] == 12_000.0
    assert document["worker"]["saturation"]["worker_cpu_s_per_1000"] == 0.1
    assert document["worker"]["two_workers"]["decisions_per_s"] == 24_000.0
    assert document["ratios"] == {
        "worker_vs_http_per_request": 40.0,
        "worker_vs_bare_kafka_loop": 0.12,
        "worker_vs_faust_consume_only": 2.0,
        # 0.15 CPU-s per 1,000 events for the agent, 0.1 for the worker (1.2 CPU-s, 12,000).
        "worker_vs_faust_consume_only_per_cpu_s": 1.5,
        "two_workers_vs_one": 2.0,
    }
    targets = {check["name"]: check for check in document["targets"]}
    assert list(targets) == [
        "decisions_per_s",
        "vs_faust_consume_only",
        "vs_http_per_request",
        "p99_at_2000",
        "p99_at_5000",
    ]
    assert all(check["met"] for check in targets.values())
    assert targets["p99_at_2000"]["target"] == 50.0 and targets["p99_at_5000"]["target"] == 100.0
    assert targets["vs_http_per_request"]["measured"] == 40.0
    # Plain types only: it is written as JSON as is.
    assert orjson.loads(orjson.dumps(document)) == document


def test_targets_missed_by_latency_and_by_ratios():
    targets = {check["name"]: check for check in _document(60.0, 120.0)["targets"]}
    assert targets["p99_at_2000"]["met"] is False  # 60 ms is under 100 but not under 50
    assert targets["p99_at_5000"]["met"] is False
    instants = [0.0] * 100 + [1.0] * 5_000
    slow = saturation_result(len(instants), instants, {})
    checks = _checks(target_checks(slow, [], _baselines(faust_rate=6_000.0)))
    assert checks["decisions_per_s"].met is False
    assert checks["vs_faust_consume_only"].measured == pytest.approx(0.833, abs=1e-3)
    assert checks["vs_faust_consume_only"].met is False
    assert checks["vs_http_per_request"].met is False  # 16.7x < 20x


def test_targets_unmeasured_without_results():
    unmeasured = _checks(target_checks(None, []))
    assert all(check.met is None and check.measured is None for check in unmeasured.values())
    assert ratios(None, {}) == {}


def test_a_skipped_target_rate_misses_the_latency_target_and_is_shown():
    lagging = fixed_rate_result(1_000.0, 0.0, 1.0, 1_000, [0.5] * 10, [10.0] * 10)
    checks = _checks(target_checks(None, [lagging], skipped_rates=[2_000.0, 5_000.0]))
    assert checks["p99_at_2000"].met is False
    assert checks["p99_at_2000"].measured is None
    assert "skipped" in checks["p99_at_5000"].note
    document = _document(p99_at_2000=40.0)
    document["worker"]["skipped_rates"] = [10_000.0]
    out = io.StringIO()
    render(document, Console(file=out, width=250))
    assert "worker, 10,000 tx/s" in out.getvalue()
    assert "skipped: a lower rate was already not kept up" in out.getvalue()


@pytest.mark.parametrize("p99", [40.0, 150.0])
def test_report_renders_every_row(p99: float):
    out = io.StringIO()
    render(_document(p99_at_2000=p99), Console(file=out, width=250))
    text = out.getvalue()
    for expected in (
        "worker, saturation",
        "2 workers, saturation",
        "worker, 2,000 tx/s",
        "ceiling: http_per_request",
        "ceiling: faust_consume_only",
        "targets",
        "two workers vs one",
    ):
        assert expected in text
    assert ("missed" in text) == (p99 >= 50)


def test_stage_quantiles_interpolate_inside_buckets_as_prometheus_does():
    from bench.results import histogram_quantile

    buckets = [(0.01, 0.0), (0.025, 50.0), (0.05, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.025)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.025 + 0.025 * 0.98)
    beyond = [(0.01, 0.0), (0.05, 10.0), (float("inf"), 20.0)]
    assert histogram_quantile(0.99, beyond) == 0.05  # in +Inf: the highest finite bound
    assert histogram_quantile(0.5, [(0.01, 0.0), (float("inf"), 0.0)]) is None


def test_stage_summary_counts_only_what_happened_between_the_scrapes():
    from bench.results import stage_summary

    before = {"deciding": [(0.01, 10.0), (0.025, 10.0), (float("inf"), 10.0)]}
    after = {"deciding": [(0.01, 10.0), (0.025, 30.0), (float("inf"), 30.0)]}
    summary = stage_summary(before, after)
    assert summary["deciding"]["batches"] == 20.0
    assert summary["deciding"]["p50_ms"] == pytest.approx(17.5)  # halfway through (10, 25] ms
    assert stage_summary({}, {}) == {}


def test_the_worker_s_stage_histogram_is_read_from_its_metrics_page():
    from prometheus_client import generate_latest

    from bench.results import stage_summary
    from bench.worker import stage_buckets
    from stream.worker import ScorerMetrics

    metrics = ScorerMetrics()
    before = stage_buckets(generate_latest(metrics.registry).decode())
    for seconds in (0.004, 0.02, 0.2):
        metrics.batch_stage.labels("delivery").observe(seconds)
    after = stage_buckets(generate_latest(metrics.registry).decode())
    assert set(after) == {"fetch_wait", "deciding", "delivery"}
    assert after["delivery"][-1] == (float("inf"), 3.0)
    summary = stage_summary(before, after)
    assert summary["delivery"]["batches"] == 3.0 and summary["fetch_wait"]["batches"] == 0.0
    assert summary["fetch_wait"]["p99_ms"] is None


def test_report_shows_where_a_batch_s_time_went_at_each_rate():
    document = _document(p99_at_2000=30.0)
    stages = {
        "fetch_wait": {"batches": 400.0, "p50_ms": 7.5, "p99_ms": 21.0},
        "deciding": {"batches": 400.0, "p50_ms": 4.0, "p99_ms": 9.5},
        "delivery": {"batches": 400.0, "p50_ms": 5.0, "p99_ms": 10.2},
    }
    document["worker"]["fixed_rates"][0]["batch_stages"] = stages
    out = io.StringIO()
    render(document, Console(file=out, width=250))
    text = out.getvalue()
    assert "Where a batch's time goes at each rate" in text
    assert "7.5 / 21.0" in text and "4.0 / 9.5" in text and "5.0 / 10.2" in text
