"""Benchmark of the feature layer: training replay and the Redis store path.

    python -m bench.features --rows 1000000
    python -m bench.features --history data/history/transactions.parquet --redis-rows 50000

Replays a synthetic (or given) history with `replay_features`, then pushes the first
--redis-rows events through `InMemoryFeatureStore` and `RedisFeatureStore.process_batch` in
batches (default 500), the latter against the running Redis under a unique key prefix that is
deleted afterwards. All three use the same --label-delay-days (default: the settings' default).
The kernels are compiled (or loaded from numba's cache) first, and timed.
Prints transactions per second (wall clock) and this process's CPU seconds for each path, with
the machine's load average: on a shared machine the wall-clock rates move with it; then the
Redis state the events left per card (bytes of the packed events, and Redis's MEMORY USAGE of
the key). A card keeps its last 30 days (at most MAX_CARD_HISTORY events), so measure on at
least a month of history (e.g. --redis-rows 350000 of the default history) for steady state.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from fraud.errors import ConfigError, ValidationError
from stream.features import DEFAULT_LABEL_DELAY
from training.data import replay_features

CHANNELS = np.array(["pos", "ecom", "atm"], dtype=object)
MERCHANT_CATEGORIES = np.array(
    ["5411", "5812", "5541", "5732", "5944", "5999", "4829", "6011", "7995", "4511", "0742"],
    dtype=object,
)
COUNTRIES = np.array(["ES", "FR", "PT", "DE", "US"], dtype=object)


def synthetic_history(rows: int, *, days: int = 60, seed: int = 0) -> pd.DataFrame:
    """A plausible card history: repeat terminals per card, second-resolution timestamps (so
    equal times occur), some optional fields missing, about 1 % fraud."""
    rng = np.random.default_rng(seed)
    n_cards = max(1, rows // 40)
    n_terminals = max(2, rows // 20)
    start = np.datetime64("2024-01-01T00:00:00", "s").astype(np.int64)
    seconds = np.sort(rng.integers(0, days * 86_400, size=rows)) + start
    activity = rng.lognormal(0.0, 0.8, size=n_cards)
    card = rng.choice(n_cards, size=rows, p=activity / activity.sum())
    home_terminal = (card * 7919 + rng.integers(0, 4, size=rows)) % n_terminals
    terminal = np.where(rng.random(rows) < 0.8, home_terminal, rng.integers(0, n_terminals, rows))
    channel = CHANNELS[rng.choice(3, size=rows, p=[0.7, 0.25, 0.05])]
    devices = np.array([f"dev{value % 5000}" for value in card], dtype=object)
    terminal_lat = 36.0 + (terminal % 997) / 997 * 7.0
    terminal_lon = -9.0 + (terminal % 991) / 991 * 12.0
    frame = pd.DataFrame(
        {
            "transaction_id": [f"tx{index:09d}" for index in range(rows)],
            "timestamp": pd.to_datetime(seconds, unit="s", utc=True).as_unit("us"),
            "card_id": [f"card{value:07d}" for value in card],
            "customer_id": [f"cust{value:07d}" for value in card],
            "terminal_id": [f"term{value:07d}" for value in terminal],
            "merchant_category": MERCHANT_CATEGORIES[
                rng.integers(0, len(MERCHANT_CATEGORIES), rows)
            ],
            "channel": channel,
            "amount": np.round(rng.lognormal(3.2, 1.0, size=rows), 2) + 0.01,
            "currency": "EUR",
            "terminal_lat": np.where(channel == "ecom", np.nan, terminal_lat),
            "terminal_lon": np.where(channel == "ecom", np.nan, terminal_lon),
            "customer_lat": 36.0 + (card % 89) / 89 * 7.0,
            "customer_lon": -9.0 + (card % 83) / 83 * 12.0,
            "device_id": np.where(channel == "ecom", devices, np.array(None, dtype=object)),
            "country": np.where(
                rng.random(rows) < 0.9, np.array("ES"), COUNTRIES[rng.integers(0, 5, rows)]
            ),
            "is_fraud": (rng.random(rows) < 0.01).astype(np.int64),
        }
    )
    frame["fraud_scenario"] = frame["is_fraud"].map({1: "synthetic", 0: None})
    return frame


def history_events(history: pd.DataFrame) -> list[dict[str, Any]]:
    """History rows as stream events (ISO timestamps, absent optional fields dropped)."""
    sorted_rows = history.sort_values(["timestamp", "transaction_id"], kind="stable")
    stamps = pd.to_datetime(sorted_rows["timestamp"], utc=True)
    iso = stamps.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").tolist()
    records = sorted_rows.drop(columns=["is_fraud", "fraud_scenario"], errors="ignore")
    events = []
    for stamp, record in zip(iso, records.to_dict("records"), strict=True):
        event = {key: value for key, value in record.items() if not _missing(value)}
        event["timestamp"] = stamp
        events.append(event)
    return events


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


@dataclass(frozen=True)
class CardStateBytes:
    cards: int
    payload_mean: float  # packed CARD_EVENT_DTYPE rows
    memory_mean: float  # Redis MEMORY USAGE: payload + key + Redis's own overhead
    memory_p99: float
    memory_max: int


def card_state_bytes(client: Any, key_prefix: str) -> CardStateBytes:
    """Bytes per card key under `key_prefix` (a RedisFeatureStore's), one pipelined pass."""
    # Card keys sit in hash-tagged shards: {key_prefix}{c<shard>}:card:<card>.
    scan: dict[str, Any] = {"target_nodes": "all"} if hasattr(client, "get_nodes") else {}
    keys = list(client.scan_iter(match=f"{key_prefix}*card:*", count=1000, **scan))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.strlen(key)
        pipe.memory_usage(key, samples=0)
    replies = pipe.execute() if keys else []
    payload = np.array(replies[0::2], dtype=float)
    memory = np.array(replies[1::2], dtype=float)
    if not keys:
        return CardStateBytes(0, float("nan"), float("nan"), float("nan"), 0)
    return CardStateBytes(
        cards=len(keys),
        payload_mean=float(payload.mean()),
        memory_mean=float(memory.mean()),
        memory_p99=float(np.percentile(memory, 99)),
        memory_max=int(memory.max()),
    )


@dataclass(frozen=True)
class Measurement:
    path: str
    rows: int
    wall_seconds: float
    cpu_seconds: float  # this process only: Redis's own work shows in wall time alone

    @property
    def rate(self) -> float:
        return self.rows / self.wall_seconds


def _measure(path: str, rows: int, work: Callable[[], object]) -> Measurement:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return Measurement(path, rows, time.perf_counter() - wall, time.process_time() - cpu)


def bench_replay(
    history: pd.DataFrame, label_delay: timedelta = DEFAULT_LABEL_DELAY
) -> Measurement:
    """replay_features over `history`, after compiling the kernels on a small slice."""
    replay_features(history.head(1_000), label_delay, show_progress=False)
    return _measure(
        "replay_features",
        len(history),
        lambda: replay_features(history, label_delay, show_progress=False),
    )


def bench_store(
    path: str, events: Sequence[dict[str, Any]], store: Any, batch_size: int
) -> Measurement:
    """process_batch over `events` in batches of `batch_size`."""

    def run() -> None:
        for start in range(0, len(events), batch_size):
            store.process_batch(events[start : start + batch_size])

    return _measure(f"{path} (batch {batch_size})", len(events), run)


def load_history(path: Path | None, rows: int) -> pd.DataFrame:
    if path is None:
        if rows < 1:
            raise ConfigError(f"--rows must be positive, got {rows}")
        return synthetic_history(rows)
    if not path.is_file():
        raise ConfigError(f"no history file at {path}")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype={"merchant_category": str})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="synthetic history rows")
    parser.add_argument("--history", type=Path, help="a Parquet/CSV history instead of synthetic")
    parser.add_argument("--redis-rows", type=int, default=100_000, help="rows through the stores")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--label-delay-days",
        type=float,
        default=DEFAULT_LABEL_DELAY / timedelta(days=1),
        help="label delay of the feature definition (replay and stores)",
    )
    parser.add_argument("--redis-url", default=None, help="default: REDIS_URL / settings")
    parser.add_argument("--skip-redis", action="store_true")
    args = parser.parse_args(argv)
    console = Console()
    try:
        measurements, state = run_benchmarks(args)
    except (ConfigError, ValidationError) as exc:
        console.print(f"[red]bench_replay: {exc}[/red]")
        return 2
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    table = Table(
        title="feature layer throughput",
        caption=f"{os.cpu_count()} cores, load average {load} (1/5/15 min)",
    )
    for column in ("path", "rows", "wall s", "tx/s", "CPU s", "tx per CPU s"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for m in measurements:
        rates = (f"{m.rate:,.0f}", f"{m.rows / m.cpu_seconds:,.0f}") if m.rows else ("", "")
        rows = f"{m.rows:,}" if m.rows else ""
        wall, cpu = f"{m.wall_seconds:.2f}", f"{m.cpu_seconds:.2f}"
        table.add_row(m.path, rows, wall, rates[0], cpu, rates[1])
    console.print(table)
    if state is not None:
        console.print(
            f"Redis state per card ({state.cards:,} cards): {state.payload_mean:,.0f} bytes of "
            f"events on average; MEMORY USAGE mean {state.memory_mean:,.0f}, p99 "
            f"{state.memory_p99:,.0f}, max {state.memory_max:,} bytes"
        )
    return 0


def run_benchmarks(args: argparse.Namespace) -> tuple[list[Measurement], CardStateBytes | None]:
    from stream.features import InMemoryFeatureStore, RedisFeatureStore

    if not args.label_delay_days >= 0:
        raise ConfigError(f"--label-delay-days must be >= 0, got {args.label_delay_days}")
    delay = timedelta(days=args.label_delay_days)
    history = load_history(args.history, args.rows)
    warm_up = history_events(history.head(2))
    results = [
        _measure(
            "kernel compile / cache load",
            0,
            lambda: InMemoryFeatureStore(label_delay=delay).process_batch(warm_up),
        ),
        bench_replay(history, delay),
    ]
    events = history_events(history.head(args.redis_rows))
    memory_store = InMemoryFeatureStore(label_delay=delay)
    results.append(bench_store("InMemoryFeatureStore", events, memory_store, args.batch_size))
    if args.skip_redis:
        return results, None
    import redis

    from fraud.secrets import mask_url
    from fraud.settings import Settings
    from stream.redis_io import connect_redis

    settings = Settings()
    if args.redis_url:
        settings = settings.model_copy(update={"redis_url": args.redis_url})
    url = mask_url(settings.redis_url)
    client = connect_redis(settings)
    store = RedisFeatureStore(client, prefix=f"bench-{uuid.uuid4().hex[:8]}", label_delay=delay)
    try:
        results.append(bench_store("RedisFeatureStore", events, store, args.batch_size))
        state = card_state_bytes(client, store.key_prefix)
    except redis.RedisError as exc:
        raise ConfigError(f"Redis at {url}: {exc}; start it with `make services`") from exc
    finally:
        try:
            store.clear()
        except redis.RedisError:
            pass
    return results, state


if __name__ == "__main__":
    raise SystemExit(main())
