"""Warm the online feature store from the history before live traffic starts.

A fresh Redis knows no card: every live transaction would look like a card's first (no
velocity, first use of every terminal and device), which the model never saw in training,
where each card carries its past. Banks load the online store from the offline history
before switching scoring on; `fraud warm-store` does that with the stream's own code path
(`RedisFeatureStore.process_batch`, in time order), so the aggregates are exactly those the
worker would have built had it seen those days. The history's fraud labels go in as they
would have become known: `label_delay` after each transaction (as in training's replay).

Idempotent per transaction id: a second run changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd

from fraud.errors import ValidationError
from fraud.settings import Settings
from schemas import load_schema

if TYPE_CHECKING:
    from stream.features.store import FeatureStore

T = TypeVar("T")

# The transaction contract's fields; a history row also has is_fraud and simulator extras.
TRANSACTION_FIELDS = tuple(load_schema("transaction")["properties"])
HISTORY_ANALYST = "history"


@dataclass(frozen=True)
class WarmReport:
    transactions: int
    labels: int
    since: str
    until: str
    seconds: float


def history_events(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """History rows as `transactions` events (missing optional fields left out)."""
    columns = [name for name in TRANSACTION_FIELDS if name in frame.columns]
    stamped = frame[columns].assign(
        timestamp=frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    )
    events = []
    for record in stamped.to_dict("records"):
        events.append(
            {
                key: value
                for key, value in record.items()
                if value is not None
                and value is not pd.NA
                and not (isinstance(value, float) and math.isnan(value))
            }
        )
    return events


def history_labels(frame: pd.DataFrame, label_delay: timedelta) -> list[dict[str, Any]]:
    """The history's frauds as feedback records, known `label_delay` after each transaction."""
    frauds = frame[frame["is_fraud"].astype(bool)]
    known = (frauds["timestamp"] + label_delay).dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return [
        {
            "transaction_id": str(tx),
            "label": "fraud",
            "analyst_id": HISTORY_ANALYST,
            "labelled_at": at,
            "source": "chargeback",
        }
        for tx, at in zip(frauds["transaction_id"], known, strict=True)
    ]


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def load_events(
    store: FeatureStore,
    events: Sequence[Mapping[str, Any]],
    batch: int = 2000,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Fold `events` (in time order) into `store`, `batch` at a time; `progress(done, total)`
    after each batch."""
    done = 0
    for chunk in _chunks(events, batch):
        store.process_batch(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, len(events))


def warm_store(
    settings: Settings,
    history: pd.DataFrame,
    days: float,
    batch: int = 2000,
    progress: Callable[[int, int], None] | None = None,
) -> WarmReport:
    """Replay the last `days` of a history (as `training.data.read_history` reads it) into the
    worker's Redis store."""
    import time

    from stream.features.redis_store import RedisFeatureStore
    from stream.redis_io import connect_redis

    began = time.perf_counter()
    frame = history
    if frame.empty or frame["timestamp"].isna().all():
        raise ValidationError("the history holds no transactions", field="path", rule="rows")
    since = frame["timestamp"].max() - pd.Timedelta(days=days)
    frame = frame[frame["timestamp"] > since].sort_values(
        ["timestamp", "transaction_id"], kind="stable"
    )
    label_delay = timedelta(days=settings.label_delay_days)
    client = connect_redis(settings)
    store = RedisFeatureStore(client, settings.redis_prefix, label_delay=label_delay)
    events = history_events(frame)
    load_events(store, events, batch, progress)
    labels = history_labels(frame, label_delay)
    applied = sum(store.apply_labels(chunk) for chunk in _chunks(labels, batch))
    return WarmReport(
        transactions=len(events),
        labels=applied,
        since=frame["timestamp"].min().isoformat(),
        until=frame["timestamp"].max().isoformat(),
        seconds=time.perf_counter() - began,
    )
