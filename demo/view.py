"""What `fraud demo` shows: numbers from the worker's /metrics and the lag monitor, and the tables.

Pure: scrapes come in as Prometheus text, times as floats, so the math is tested without a
worker. `LiveStats.update` keeps a few seconds of scrapes, so rates and latency percentiles are
those of the last seconds, while tier counts and the alert rate are totals since the start.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from stream.worker import DECISIONS

LATENCY = "fraud_event_to_decision_seconds"


@dataclass(frozen=True)
class Scrape:
    """One read of /metrics: counters, latency buckets (upper bound -> cumulative count) and
    the model version, at `at` seconds."""

    at: float
    decided: float
    dead_lettered: float
    tiers: dict[str, float]
    latency_buckets: tuple[tuple[float, float], ...]
    model_version: str | None
    model_reloads: float


def parse_metrics(text: str, at: float) -> Scrape:
    """The demo's numbers out of the worker's Prometheus text."""
    decided = dead = reloads = 0.0
    tiers = dict.fromkeys(DECISIONS, 0.0)
    buckets: list[tuple[float, float]] = []
    version = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "fraud_transactions_total":
                if labels.get("outcome") == "decided":
                    decided = value
                elif labels.get("outcome") == "dead_lettered":
                    dead = value
            elif name == "fraud_decisions_total" and labels.get("decision") in tiers:
                tiers[labels["decision"]] = value
            elif name == f"{LATENCY}_bucket":
                buckets.append((float(labels["le"]), value))
            elif name == "fraud_model_info":
                version = labels.get("version")
            elif name == "fraud_model_reloads_total":
                reloads = value
    buckets.sort()
    return Scrape(at, decided, dead, tiers, tuple(buckets), version, reloads)


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus's histogram_quantile: linear within the bucket holding the q-th observation
    (cumulative counts by upper bound, +Inf last). None without observations; the highest
    finite bound when the quantile falls in +Inf."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def bucket_difference(
    newer: Sequence[tuple[float, float]], older: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """The observations between two scrapes (same bucket bounds; a restart shows as newer)."""
    previous = dict(older)
    return [(bound, max(0.0, count - previous.get(bound, 0.0))) for bound, count in newer]


@dataclass
class LiveStats:
    """Rolling view of the scrapes; `window_s` sets how far back rates and percentiles look."""

    window_s: float = 5.0
    scrapes: deque[Scrape] = field(default_factory=lambda: deque(maxlen=120))
    lag: int | None = None
    lag_seconds: float | None = None
    lag_status: str | None = None
    feedback_lag: int | None = None
    peak_rate: float = 0.0

    def update(self, scrape: Scrape) -> None:
        self.scrapes.append(scrape)
        self.peak_rate = max(self.peak_rate, self.rate or 0.0)

    def _base(self) -> Scrape | None:
        if len(self.scrapes) < 2:
            return None
        latest = self.scrapes[-1]
        for scrape in self.scrapes:
            if latest.at - scrape.at <= self.window_s:
                return scrape if scrape is not latest else self.scrapes[-2]
        return self.scrapes[-2]

    @property
    def latest(self) -> Scrape | None:
        return self.scrapes[-1] if self.scrapes else None

    @property
    def rate(self) -> float | None:
        """Decisions per second over the window."""
        base, latest = self._base(), self.latest
        if base is None or latest is None or latest.at <= base.at:
            return None
        return max(0.0, latest.decided - base.decided) / (latest.at - base.at)

    def latency(self, q: float, overall: bool = False) -> float | None:
        """Event-to-decision latency quantile, seconds: over the window (or since the start)."""
        latest, base = self.latest, self._base()
        if latest is None:
            return None
        if overall or base is None:
            return histogram_quantile(q, latest.latency_buckets)
        window = bucket_difference(latest.latency_buckets, base.latency_buckets)
        return histogram_quantile(q, window)

    @property
    def alert_rate(self) -> float | None:
        latest = self.latest
        if latest is None:
            return None
        total = sum(latest.tiers.values())
        return (latest.tiers["review"] + latest.tiers["decline"]) / total if total else None


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{1000 * seconds:,.1f} ms"


def _count(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def live_table(stats: LiveStats, elapsed_s: float, produced: str, title: str) -> Any:
    """The live view, redrawn every second."""
    from rich.table import Table

    latest = stats.latest
    table = Table(title=title, min_width=60)
    table.add_column("live", style="bold")
    table.add_column("value", justify="right")
    rows: Iterable[tuple[str, str]] = [
        ("elapsed", f"{elapsed_s:,.0f} s"),
        ("traffic", produced),
        ("decisions / s", "n/a" if stats.rate is None else f"{stats.rate:,.0f}"),
        ("latency p50 / p99", f"{_ms(stats.latency(0.5))} / {_ms(stats.latency(0.99))}"),
        ("decided", _count(latest.decided if latest else None)),
        *(
            (f"  {tier}", _count(latest.tiers[tier] if latest else None))
            for tier in ("approve", "review", "decline")
        ),
        ("alert rate", "n/a" if stats.alert_rate is None else f"{stats.alert_rate:.2%}"),
        ("dead-lettered", _count(latest.dead_lettered if latest else None)),
        (
            "consumer lag",
            "n/a"
            if stats.lag is None
            else f"{stats.lag:,} transactions, {stats.lag_seconds or 0:.1f} s ({stats.lag_status})",
        ),
        ("feedback lag", "n/a" if stats.feedback_lag is None else f"{stats.feedback_lag:,} labels"),
        (
            "model",
            "n/a"
            if latest is None or latest.model_version is None
            else f"v{latest.model_version} ({latest.model_reloads:.0f} hot swaps)",
        ),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table
