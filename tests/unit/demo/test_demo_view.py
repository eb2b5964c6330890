"""The demo's live numbers from the worker's real /metrics output (ScorerMetrics), no worker."""

from __future__ import annotations

import math

import pytest
from prometheus_client import generate_latest

from demo.view import (
    LiveStats,
    bucket_difference,
    histogram_quantile,
    live_table,
    parse_metrics,
)
from stream.worker import ScorerMetrics


def metrics_text(decided: int, latencies: list[float], version: str = "7") -> str:
    metrics = ScorerMetrics()
    metrics.transactions.labels("decided").inc(decided)
    metrics.transactions.labels("dead_lettered").inc(2)
    for tier, share in (("approve", 0.9), ("review", 0.08), ("decline", 0.02)):
        metrics.decisions.labels(tier).inc(decided * share)
    for seconds in latencies:
        metrics.latency.observe(seconds)
    metrics.model.info({"name": "fraud-detector", "version": version, "alias": "champion"})
    metrics.model_reloads.inc(1)
    return generate_latest(metrics.registry).decode()


def test_parse_metrics_reads_the_scorers_own_output() -> None:
    scrape = parse_metrics(metrics_text(1000, [0.004] * 10), at=12.0)
    assert scrape.at == 12.0 and scrape.decided == 1000 and scrape.dead_lettered == 2
    assert scrape.tiers == pytest.approx({"approve": 900, "review": 80, "decline": 20})
    assert scrape.model_version == "7" and scrape.model_reloads == 1
    assert scrape.latency_buckets[-1] == (math.inf, 10)
    assert dict(scrape.latency_buckets)[0.005] == 10 and dict(scrape.latency_buckets)[0.0025] == 0


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = [(0.01, 50.0), (0.1, 90.0), (1.0, 100.0), (math.inf, 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    # rank 70 lies 20 of 40 observations into (0.01, 0.1]
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.055)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.1 + 0.9 * 9 / 10)
    assert histogram_quantile(0.5, [(0.01, 0.0), (math.inf, 0.0)]) is None
    assert histogram_quantile(0.99, [(0.01, 1.0), (math.inf, 10.0)]) == 0.01  # in +Inf


def test_window_latency_forgets_the_slow_start() -> None:
    stats = LiveStats(window_s=5.0)
    stats.update(parse_metrics(metrics_text(0, []), at=0.0))
    stats.update(parse_metrics(metrics_text(1000, [2.0] * 100), at=1.0))  # a backlog at first
    stats.update(parse_metrics(metrics_text(1500, [2.0] * 100 + [0.003] * 900), at=10.0))
    # over the last 5 s only the fast decisions count; since the start the slow ones dominate p99
    # rank 891 of 900 in (2.5 ms, 5 ms]
    assert stats.latency(0.99) == pytest.approx(0.0025 + 0.0025 * 891 / 900)
    # rank 990 of 1000: 90 of the 100 slow ones into (1 s, 2.5 s]
    assert stats.latency(0.99, overall=True) == pytest.approx(1.0 + 1.5 * 90 / 100)
    assert stats.rate == pytest.approx(500 / 9.0)  # the previous scrape is older than the window
    assert stats.peak_rate == pytest.approx(1000.0)
    assert stats.alert_rate == pytest.approx(0.10)


def test_bucket_difference_is_per_bound_and_never_negative() -> None:
    newer = [(0.1, 5.0), (math.inf, 8.0)]
    older = [(0.1, 2.0), (math.inf, 9.0)]
    assert bucket_difference(newer, older) == [(0.1, 3.0), (math.inf, 0.0)]


def test_live_table_shows_every_number() -> None:
    from rich.console import Console

    stats = LiveStats()
    stats.update(parse_metrics(metrics_text(0, []), at=0.0))
    stats.update(parse_metrics(metrics_text(2000, [0.004] * 2000), at=2.0))
    stats.lag, stats.lag_seconds, stats.lag_status, stats.feedback_lag = 42, 0.5, "OK", 7
    console = Console(width=100, record=True)
    console.print(live_table(stats, 3.0, "500/s for 60 s", "demo"))
    text = console.export_text()
    for expected in (
        "1,000",
        "2,000",
        "10.00%",
        "42 transactions, 0.5 s (OK)",
        "7 labels",
        "v7 (1 hot swaps)",
    ):
        assert expected in text, text
    assert "3.8 ms / 5.0 ms" in text


def test_lag_is_split_between_transactions_and_feedback() -> None:
    from demo.run import lag_by_topic
    from stream.monitoring import GroupLag, PartitionLag, Status

    def partition(
        topic: str, number: int, lag: int, seconds: float, status: Status
    ) -> PartitionLag:
        return PartitionLag(topic, number, 100, 100 + lag, lag, seconds, status, 3, 1.0)

    group = GroupLag(
        "scorer",
        "Stable",
        1,
        2.0,
        (
            partition("tx", 0, 5, 0.4, Status.OK),
            partition("tx", 1, 7, 0.9, Status.OK),
            partition("labels", 0, 300, 30.0, Status.WARN),
        ),
    )
    stats = LiveStats()
    lag_by_topic(stats, group, "tx")
    assert (stats.lag, stats.lag_seconds, stats.feedback_lag) == (12, 0.9, 300)
    assert stats.lag_status == "WARN"
