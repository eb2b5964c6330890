"""Benchmark arithmetic and the results document (bench/results.py, bench_report.py)."""

from __future__ import annotations

import io

import orjson
import pytest
from rich.console import Console

from bench.report import render
from bench.results import (
    RESULTS_SCHEMA,
    BaselineResult,
    count_within,
    decision_span,
    fixed_rate_result,
    latency_summary,
    mean_batch,
    rate,
    ratio,
    ratios,
    results_document,
    saturation_result,
    shares,
    target_checks,
)


def test_latency_percentiles_interpolate_between_ranks():
    summary = latency_summary([float(v) for v in range(1, 101)])
    assert summary is not None
    assert (summary.count, summary.p50, summary.p95, summary.p99) == (100, 50.5, 95.05, 99.01)
    assert (summary.max, summary.mean) == (100.0, 50.5)


def test_latency_of_one_value_and_of_none():
    one = latency_summary([7.25])
    assert one is not None and one.p50 == one.p99 == one.max == 7.25
    assert latency_summary([]) is None


def test_rate_and_ratio_guard_against_zero():
    assert rate(1_000, 2.0) == 500.0
    assert rate(1_000, 0.0) == 0.0
    assert ratio(3_000.0, 1_500.0) == 2.0
    assert ratio(3_000.0, 0.0) is None


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


def test_fixed_rate_counts_decisions_inside_the_sending_window():
    # 100 events sent over 10 s; 80 decided inside the window, 20 in the 3 s after it.
    decided = [100.0 + i * 0.125 for i in range(80)] + [110.5] * 10 + [113.0] * 10
    result = fixed_rate_result(10.0, 100.0, 110.0, 100, decided, [20.0] * 100, 0.4, 1.2)
    assert result.decided_in_window == 80
    assert result.decisions_per_s == 8.0
    assert result.achieved_offered_rate == 10.0
    assert result.drain_s == 3.0
    assert result.complete
    assert result.latency_ms is not None and result.latency_ms.p99 == 20.0


def test_a_rate_drained_late_is_complete_but_not_kept_up():
    # Every event decided, but 40 of 100 only after the window: the worker was too slow.
    decided = [100.0 + i * 0.1 for i in range(60)] + [115.0] * 40
    result = fixed_rate_result(10.0, 100.0, 110.0, 100, decided, [1.0] * 100)
    assert result.complete
    assert not result.kept_up
    assert target_checks(None, [result])["p99_ms"]["met"] is None  # not the 2,000 tx/s rate


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


def test_saturation_result_rates_per_wall_and_per_worker_cpu_second():
    instants = [0.0] * 500 + [1.0] * 500 + [2.0] * 500
    tiers = {"approve": 1_200, "review": 300}
    result = saturation_result(1_501, instants, {"card_number": 1}, 4.0, 1.0, 0.5, tiers, 3)
    assert result.decisions_per_s == 500.0  # 1,000 decided after the first batch, over 2 s
    assert result.decisions_per_worker_cpu_s == 250.0
    assert result.dead_lettered == 1
    assert result.decision_shares == {"approve": 0.8, "review": 0.2}
    assert result.mean_batch_size == 500.0
    assert result.complete
    assert not saturation_result(2_000, instants, {}, None, None, None).complete


def _document(p99_at_2000: float, saturation_rate_scale: int = 1) -> dict:
    instants = [0.0] * 100 + [1.0] * (12_000 * saturation_rate_scale)
    saturation = saturation_result(len(instants), instants, {}, 1.0, 1.0, 0.1)
    fixed = [fixed_rate_result(2_000.0, 0.0, 1.0, 2_000, [0.5] * 2_000, [p99_at_2000] * 2_000)]
    baselines = {
        "http_per_request": BaselineResult("http_per_request", "one per request", 600, 2.0, 300.0),
        "bare_kafka_loop": BaselineResult("bare_kafka_loop", "no work", 100_000, 1.0, 100_000.0),
    }
    return results_document(
        run_id="r1",
        started_at="2026-01-01T00:00:00Z",
        finished_at="2026-01-01T00:05:00Z",
        machine={"cores": 2, "cpu": "test", "load_average_at_start": [1.0, 1.0, 1.0]},
        versions={"python": "3.11"},
        settings={
            "events": len(instants),
            "rates": [2_000.0],
            "duration_s": 1.0,
            "warmup_s": 0.0,
            "partitions": 4,
            "customers": 10,
            "worker_batch_size": 500,
            "worker_batch_within_s": 0.02,
        },
        saturation=saturation,
        fixed=fixed,
        baselines=baselines,
    )


def test_results_document_shape_ratios_and_targets():
    document = _document(p99_at_2000=40.0)
    assert document["schema"] == RESULTS_SCHEMA
    assert set(document) >= {"machine", "versions", "settings", "worker", "baselines", "ratios"}
    assert document["worker"]["saturation"]["decisions_per_s"] == 12_000.0
    assert document["ratios"] == {
        "worker_vs_http_per_request": 40.0,
        "worker_vs_bare_kafka_loop": 0.12,
    }
    assert document["targets"]["decisions_per_s"]["met"] is True
    assert document["targets"]["p99_ms"] == {
        "target": 100.0,
        "at_offered_rate": 2_000.0,
        "measured": 40.0,
        "met": True,
    }
    # Plain types only: it is written as JSON as is.
    assert orjson.loads(orjson.dumps(document)) == document


def test_targets_missed_and_unmeasured():
    assert _document(p99_at_2000=150.0)["targets"]["p99_ms"]["met"] is False
    unmeasured = target_checks(None, [])
    assert unmeasured["decisions_per_s"]["met"] is None
    assert unmeasured["p99_ms"]["met"] is None
    assert ratios(None, {}) == {}


def test_a_rate_not_kept_up_with_misses_the_latency_target():
    lagging = fixed_rate_result(2_000.0, 0.0, 1.0, 2_000, [0.5] * 1_000, [10.0] * 1_000)
    assert target_checks(None, [lagging])["p99_ms"]["met"] is False


def test_a_skipped_target_rate_misses_the_latency_target_and_is_shown():
    lagging = fixed_rate_result(1_000.0, 0.0, 1.0, 1_000, [0.5] * 10, [10.0] * 10)
    checks = target_checks(None, [lagging], skipped_rates=[2_000.0, 5_000.0])
    assert checks["p99_ms"]["met"] is False
    assert checks["p99_ms"]["measured"] is None
    document = _document(p99_at_2000=40.0)
    document["worker"]["skipped_rates"] = [5_000.0]
    out = io.StringIO()
    render(document, Console(file=out, width=250))
    assert "worker, 5,000 tx/s" in out.getvalue()
    assert "skipped: a lower rate was already not kept up" in out.getvalue()


@pytest.mark.parametrize("p99", [40.0, 150.0])
def test_report_renders_every_row(p99: float):
    out = io.StringIO()
    render(_document(p99_at_2000=p99), Console(file=out, width=200))
    text = out.getvalue()
    for expected in ("worker, saturation", "worker, 2,000 tx/s", "http_per_request", "targets"):
        assert expected in text
    assert ("missed" in text) == (p99 > 100)
