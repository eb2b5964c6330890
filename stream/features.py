"""The feature definition shared by the stream and training: names and pure functions.

One definition: the stream stores (stream/feature_store.py) and the training replay
(training/replay.py) compute every feature through the functions here, which run the compiled
kernels of stream/feature_kernels.py on columns encoded by stream/feature_encoding.py.

Conventions that make features exact and independent of processing order:
- Time is int64 microseconds since the Unix epoch, UTC; hour/night/weekend are in UTC.
- Windows are half-open: an earlier event at time s is inside window w of an event at time t
  when t - w <= s < t. Events with the same timestamp never see each other.
- A card looks back at most 30 days and at most MAX_CARD_HISTORY events (older state expires),
  so "new terminal/country/device" means "not used by this card within that lookback" and
  seconds_since_prev_tx is None when the card had no transaction in the last 30 days.
- Terminal counts are its transactions in the window; the fraud rate is the share of them that
  were confirmed fraud by a label known at t (labelled_at <= t), None with no transactions.
- Missing values are NaN in arrays and None in feature dicts; categorical codes are never
  missing (UNKNOWN_CODE instead).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream.feature_encoding import (
    CARD_EVENT_DTYPE,
    CHANNEL_CODES,
    MERCHANT_CATEGORY_GROUPS,
    UNKNOWN_CODE,
    EventColumns,
    FloatArray,
    IntArray,
    card_records,
    columns_from_events,
)
from stream.feature_kernels import (
    CARD_LOOKBACK_US,
    CARD_WINDOW_US,
    DAY_US,
    HOUR_US,
    MAX_CARD_HISTORY,
    TERMINAL_LOOKBACK_US,
    TERMINAL_WINDOW_US,
    card_kernel,
    event_kernel,
    terminal_kernel,
)

__all__ = [
    "CARD_EVENT_DTYPE",
    "CARD_FEATURES",
    "CARD_LOOKBACK_US",
    "CARD_WINDOWS",
    "CATEGORICAL_FEATURES",
    "CHANNEL_CODES",
    "DAY_US",
    "EVENT_FEATURES",
    "FEATURE_NAMES",
    "HOUR_US",
    "MAX_CARD_HISTORY",
    "MERCHANT_CATEGORY_GROUPS",
    "PROTECTED_ATTRIBUTES",
    "TERMINAL_FEATURES",
    "TERMINAL_LOOKBACK_US",
    "TERMINAL_WINDOWS",
    "UNKNOWN_CODE",
    "BatchResult",
    "CardSequence",
    "EventColumns",
    "TerminalFrauds",
    "batch_features",
    "card_features_grouped",
    "event_features",
    "feature_dicts",
    "features_without_history",
    "prune_card_history",
    "terminal_features_grouped",
]

CARD_WINDOWS: tuple[tuple[str, int], ...] = tuple(
    zip(("1h", "24h", "7d", "30d"), CARD_WINDOW_US, strict=True)
)
TERMINAL_WINDOWS: tuple[tuple[str, int], ...] = tuple(
    zip(("1d", "7d", "28d"), TERMINAL_WINDOW_US, strict=True)
)

EVENT_FEATURES: tuple[str, ...] = (
    "amount",
    "hour_of_day",
    "is_night",
    "is_weekend",
    "channel_code",
    "merchant_category_group_code",
    "distance_customer_to_terminal_km",
)
CARD_FEATURES: tuple[str, ...] = (
    *(
        f"card_{stat}_{window}"
        for window, _ in CARD_WINDOWS
        for stat in ("count", "amount_sum", "amount_mean", "amount_max")
    ),
    "amount_to_card_mean_30d",
    "seconds_since_prev_tx",
    "distance_from_prev_tx_km",
    "speed_from_prev_tx_kmh",
    "card_distinct_terminals_24h",
    "card_distinct_countries_24h",
    "card_new_terminal_30d",
    "card_new_country_30d",
    "card_new_device_30d",
)
TERMINAL_FEATURES: tuple[str, ...] = (
    *(f"terminal_count_{window}" for window, _ in TERMINAL_WINDOWS),
    *(f"terminal_fraud_rate_{window}" for window, _ in TERMINAL_WINDOWS),
)
FEATURE_NAMES: tuple[str, ...] = EVENT_FEATURES + CARD_FEATURES + TERMINAL_FEATURES
# Encoded as small non-negative integers: CHANNEL_CODES, MERCHANT_CATEGORY_GROUPS, UNKNOWN_CODE.
CATEGORICAL_FEATURES: tuple[str, ...] = ("channel_code", "merchant_category_group_code")
# Never model inputs (nor derived into one); the fairness audit groups by them instead.
PROTECTED_ATTRIBUTES: tuple[str, ...] = ("birth_year", "age", "gender")


def _contiguous(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array)


def event_features(columns: EventColumns, rows: IntArray | None = None) -> FloatArray:
    """Features of the event alone (no state), one row per event, EVENT_FEATURES order."""
    take = slice(None) if rows is None else rows
    fields = (
        columns.ts,
        columns.amount,
        columns.channel_code,
        columns.merchant_group_code,
        columns.terminal_lat,
        columns.terminal_lon,
        columns.customer_lat,
        columns.customer_lon,
    )
    ts, amount, channel, merchant_group, term_lat, term_lon, cust_lat, cust_lon = (
        _contiguous(field[take]) for field in fields
    )
    out = np.empty((len(ts), len(EVENT_FEATURES)))
    event_kernel(ts, amount, channel, merchant_group, term_lat, term_lon, cust_lat, cust_lon, out)
    return out


@dataclass(frozen=True)
class CardSequence:
    """Card events laid out for the card kernel: each card's events contiguous and sorted by
    (ts, tx_key); `group_start[i]` is the index of the first event of row i's card."""

    ts: IntArray
    amount: FloatArray
    terminal_key: IntArray
    country_key: IntArray
    device_key: IntArray
    lat: FloatArray
    lon: FloatArray
    group_start: IntArray

    @classmethod
    def from_records(cls, records: np.ndarray, group_start: IntArray) -> CardSequence:
        """From CARD_EVENT_DTYPE rows (a store's state plus new events)."""
        return cls(
            ts=_contiguous(records["ts"]),
            amount=_contiguous(records["amount"]),
            terminal_key=_contiguous(records["terminal_key"]),
            country_key=_contiguous(records["country_key"]),
            device_key=_contiguous(records["device_key"]),
            lat=_contiguous(records["lat"]),
            lon=_contiguous(records["lon"]),
            group_start=_contiguous(group_start),
        )


def card_features_grouped(cards: CardSequence, positions: IntArray) -> FloatArray:
    """CARD_FEATURES of the rows `positions` of `cards`.

    A row sees only earlier rows of its own card, so any subset of positions can be computed
    in any order (the replay computes them in chunks).
    """
    out = np.empty((len(positions), len(CARD_FEATURES)))
    card_kernel(
        cards.ts,
        cards.amount,
        cards.terminal_key,
        cards.country_key,
        cards.device_key,
        cards.lat,
        cards.lon,
        cards.group_start,
        _contiguous(positions),
        out,
    )
    return out


def terminal_features_grouped(
    ts: IntArray,
    group_start: IntArray,
    positions: IntArray,
    stored_counts: FloatArray,
    fraud_ts: IntArray,
    fraud_known_at: IntArray,
    fraud_low: IntArray,
    fraud_high: IntArray,
) -> FloatArray:
    """TERMINAL_FEATURES of the rows `positions` of `ts` (grouped per terminal, sorted by time).

    `stored_counts[p]` adds transactions kept outside `ts` (a store's earlier batches), one
    column per TERMINAL_WINDOWS. The confirmed frauds of position p's terminal are
    `fraud_ts[fraud_low[p]:fraud_high[p]]` (sorted), known from `fraud_known_at`.
    """
    out = np.empty((len(positions), len(TERMINAL_FEATURES)))
    terminal_kernel(
        _contiguous(ts),
        _contiguous(group_start),
        _contiguous(positions),
        _contiguous(stored_counts.astype(np.float64, copy=False)),
        _contiguous(fraud_ts),
        _contiguous(fraud_known_at),
        _contiguous(fraud_low),
        _contiguous(fraud_high),
        out,
    )
    return out


def prune_card_history(records: np.ndarray) -> np.ndarray:
    """What a card keeps: its latest MAX_CARD_HISTORY events of the last 30 days (+1 day slack
    for late events), relative to its newest event. Input sorted by (ts, tx_key)."""
    if len(records) == 0:
        return records
    cutoff = records["ts"][-1] - CARD_LOOKBACK_US - DAY_US
    first = max(int(np.searchsorted(records["ts"], cutoff)), len(records) - MAX_CARD_HISTORY)
    return records[first:].copy()


@dataclass(frozen=True)
class TerminalFrauds:
    """A terminal's confirmed frauds: transaction times (sorted) and when each label was known."""

    ts: IntArray
    known_at: IntArray


NO_FRAUDS = TerminalFrauds(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))


@dataclass(frozen=True)
class BatchResult:
    features: FloatArray  # (len(rows), len(FEATURE_NAMES))
    card_history: dict[str, np.ndarray]  # new state of every card in the batch


def _sorted_within_groups(ts: IntArray, tx_key: IntArray, group: IntArray) -> bool:
    same_group = group[1:] == group[:-1]
    in_order = (ts[1:] > ts[:-1]) | ((ts[1:] == ts[:-1]) & (tx_key[1:] >= tx_key[:-1]))
    return bool(np.all(in_order | ~same_group))


def batch_features(
    columns: EventColumns,
    rows: IntArray,
    card_history: Mapping[str, np.ndarray],
    terminal_stored_counts: FloatArray,
    terminal_frauds: Mapping[str, TerminalFrauds],
) -> BatchResult:
    """State + new events -> their features and the cards' new state (pure).

    `rows` are the batch positions of events never seen before (no duplicates). Events of one
    card or terminal see each other in time order. `terminal_stored_counts[i]` are the stored
    transactions of row i's terminal in each TERMINAL_WINDOWS window before its time.
    """
    rows = np.asarray(rows, dtype=np.int64)
    new = card_records(columns, rows)
    time_order = np.lexsort((new["tx_key"], new["ts"])).tolist()
    card_of = [columns.card_id[row] for row in rows.tolist()]
    by_card: dict[str, list[int]] = {}
    for position in time_order:
        by_card.setdefault(card_of[position], []).append(position)
    # Each card's stored events, then its new ones: one contiguous group per card.
    pieces: list[np.ndarray] = []
    batch_position: list[int] = []  # -1 for stored events
    sizes: list[int] = []
    for card, new_positions in by_card.items():
        history = card_history.get(card)
        stored = 0 if history is None else len(history)
        if history is not None and stored:
            pieces.append(history)
            batch_position.extend([-1] * stored)
        pieces.append(new[new_positions])
        batch_position.extend(new_positions)
        sizes.append(stored + len(new_positions))
    merged = np.concatenate(pieces)
    where = np.array(batch_position, dtype=np.int64)
    group = np.repeat(np.arange(len(sizes)), sizes)
    if not _sorted_within_groups(merged["ts"], merged["tx_key"], group):
        order = np.lexsort((merged["tx_key"], merged["ts"], group))
        merged, where = merged[order], where[order]
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    positions = np.flatnonzero(where >= 0)
    features = np.empty((len(rows), len(FEATURE_NAMES)))
    card_block = slice(len(EVENT_FEATURES), len(EVENT_FEATURES) + len(CARD_FEATURES))
    cards = CardSequence.from_records(merged, np.repeat(starts, sizes))
    features[where[positions], card_block] = card_features_grouped(cards, positions)
    features[:, : len(EVENT_FEATURES)] = event_features(columns, rows)
    features[:, card_block.stop :] = _batch_terminal_features(
        columns, rows, time_order, terminal_stored_counts, terminal_frauds
    )
    history_out = {
        card: prune_card_history(merged[start : start + size])
        for card, start, size in zip(by_card, starts.tolist(), sizes, strict=True)
    }
    return BatchResult(features, history_out)


def _batch_terminal_features(
    columns: EventColumns,
    rows: IntArray,
    time_order: list[int],
    stored_counts: FloatArray,
    terminal_frauds: Mapping[str, TerminalFrauds],
) -> FloatArray:
    terminals = [columns.terminal_id[row] for row in rows.tolist()]
    by_terminal: dict[str, list[int]] = {}
    for position in time_order:
        by_terminal.setdefault(terminals[position], []).append(position)
    order: list[int] = []
    group_start: list[int] = []
    fraud_ts: list[IntArray] = []
    fraud_known: list[IntArray] = []
    fraud_low: list[int] = []
    fraud_high: list[int] = []
    fraud_total = 0
    for terminal, positions in by_terminal.items():
        frauds = terminal_frauds.get(terminal, NO_FRAUDS)
        group_start.extend([len(order)] * len(positions))
        fraud_low.extend([fraud_total] * len(positions))
        fraud_total += len(frauds.ts)
        fraud_high.extend([fraud_total] * len(positions))
        fraud_ts.append(frauds.ts)
        fraud_known.append(frauds.known_at)
        order.extend(positions)
    ordered = np.array(order, dtype=np.int64)
    computed = terminal_features_grouped(
        columns.ts[rows[ordered]],
        np.array(group_start, dtype=np.int64),
        np.arange(len(ordered), dtype=np.int64),
        stored_counts[ordered],
        np.concatenate(fraud_ts),
        np.concatenate(fraud_known),
        np.array(fraud_low, dtype=np.int64),
        np.array(fraud_high, dtype=np.int64),
    )
    out = np.empty_like(computed)
    out[ordered] = computed
    return out


def feature_dicts(matrix: FloatArray) -> list[dict[str, float | None]]:
    """Rows of a feature matrix -> dicts in FEATURE_NAMES order, NaN -> None."""
    return [
        {
            name: (None if value != value else value)
            for name, value in zip(FEATURE_NAMES, row, strict=True)
        }
        for row in matrix.tolist()
    ]


def features_without_history(event: Mapping[str, Any]) -> dict[str, float | None]:
    """Features of `event` for a card and terminal with no history (degraded mode)."""
    columns = columns_from_events([event])
    rows = np.zeros(1, dtype=np.int64)
    no_counts = np.zeros((1, len(TERMINAL_WINDOWS)))
    result = batch_features(columns, rows, {}, no_counts, {})
    return feature_dicts(result.features)[0]
