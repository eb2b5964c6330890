"""The feature definition shared by the stream and training: names and pure functions.

One definition: the stream stores (stream/features/memory_store.py) and the training replay
(training/data/replay.py) compute every feature through the functions here, which run the compiled
kernels of stream/features/kernels.py on columns encoded by stream/features/encoding.py.

Conventions that make features exact and independent of processing order:
- Time is int64 microseconds since the Unix epoch, UTC; hour/night/weekend are in UTC.
- Windows are half-open: an earlier event at time s is inside window w of an event at time t
  when t - w <= s < t. Events with the same timestamp never see each other.
- A card looks back at most 30 days and at most MAX_CARD_HISTORY events (older state expires),
  so "new terminal/country/device" means "not used by this card within that lookback" and
  seconds_since_prev_tx is None when the card had no transaction in the last 30 days.
- Terminal features, for windows w of 1, 7 and 28 days and the label delay D:
  - terminal_count_<w>: the terminal's transactions in [t - w, t). Needs no labels.
  - terminal_count_<w>_after_delay: its transactions in the window of width w that ends where
    the delay period [t - D, t) begins: [t - D - w, t - D).
  - terminal_fraud_rate_<w>_after_delay: the share of those that were confirmed fraud by a
    label known at t (labelled_at <= t); None when the window holds no transaction.
  Why after the delay: training knows a label from its transaction time + D on, so over
  [t - w, t) it would see no label for w <= D and only the oldest w - D of a longer window,
  while analysts' labels reach the stream within hours: one feature, two meanings (a
  training/serving skew). Every label of [t - D - w, t - D) is known in training, and in the
  stream too once it arrived within D of its transaction, so both compute the same value; a
  label arriving sooner changes nothing earlier than in training.
  D is a parameter of the definition (`label_delay_us` here; `label_delay` of the stores and of
  the replay, by default Settings.label_delay_days): the stream must use the D of the training
  run that produced its model.
- Card habit features (CARD_HABIT_FEATURES) compare an event with its card's own lookback:
  how its amount ranks there, how usual its hour, merchant category group and channel are,
  how busy the last day and the last 4 days are against the card's typical day (measured on
  the lookback before those 4 days), how familiar its terminal and device are, and how many
  terminals and devices the card used for the first time in the last 4 days. They need no
  state beyond the card's events (each keeps its channel and category group code), so the
  stream and the replay compute them alike (see kernels.card_habit_kernel).
- Missing values are NaN in arrays and None in feature dicts; categorical codes are never
  missing (UNKNOWN_CODE instead).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream.features.encoding import (
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
from stream.features.kernels import (
    CARD_LOOKBACK_US,
    CARD_WINDOW_US,
    DAY_US,
    HOUR_US,
    MAX_CARD_HISTORY,
    TERMINAL_LOOKBACK_US,
    TERMINAL_WINDOW_US,
    card_habit_kernel,
    card_kernel,
    event_kernel,
    terminal_kernel,
)

__all__ = [
    "CARD_EVENT_DTYPE",
    "CARD_FEATURES",
    "CARD_HABIT_FEATURES",
    "CARD_LOOKBACK_US",
    "CARD_STATS",
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
    "canonical_card_state",
    "card_features_grouped",
    "event_features",
    "feature_dicts",
    "features_without_history",
    "merged_card_rows",
    "terminal_count_offsets",
    "terminal_features_grouped",
    "vector_without_history",
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
# Per card window, in this order (the card kernel writes its columns so).
CARD_STATS: tuple[str, ...] = ("count", "amount_sum", "amount_mean", "amount_max")
CARD_FEATURES: tuple[str, ...] = (
    *(f"card_{stat}_{window}" for window, _ in CARD_WINDOWS for stat in CARD_STATS),
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
CARD_HABIT_FEATURES: tuple[str, ...] = (
    "card_amount_percentile_30d",
    "amount_to_card_category_mean_30d",
    "card_category_share_30d",
    "card_hour_share_30d",
    "card_channel_share_30d",
    "card_typical_daily_count",
    "card_count_24h_to_typical_day",
    "card_count_4d_to_typical",
    "card_amount_4d_to_typical",
    "card_terminal_uses_30d",
    "seconds_since_card_used_terminal",
    "seconds_since_card_first_used_device",
    "card_new_terminals_4d",
    "card_new_devices_4d",
)
TERMINAL_FEATURES: tuple[str, ...] = (
    *(f"terminal_count_{window}" for window, _ in TERMINAL_WINDOWS),
    *(f"terminal_count_{window}_after_delay" for window, _ in TERMINAL_WINDOWS),
    *(f"terminal_fraud_rate_{window}_after_delay" for window, _ in TERMINAL_WINDOWS),
)
FEATURE_NAMES: tuple[str, ...] = (
    EVENT_FEATURES + CARD_FEATURES + CARD_HABIT_FEATURES + TERMINAL_FEATURES
)
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
        _contiguous(column[take]) for column in fields
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
    channel_code: IntArray
    merchant_group_code: IntArray
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
            channel_code=records["channel_code"].astype(np.int64),
            merchant_group_code=records["merchant_group_code"].astype(np.int64),
            group_start=_contiguous(group_start),
        )


def card_features_grouped(cards: CardSequence, positions: IntArray) -> FloatArray:
    """CARD_FEATURES then CARD_HABIT_FEATURES of the rows `positions` of `cards`.

    A row sees only earlier rows of its own card, so any subset of positions can be computed
    in any order (the replay computes them in chunks).
    """
    positions = _contiguous(positions)
    out = np.empty((len(positions), len(CARD_FEATURES) + len(CARD_HABIT_FEATURES)))
    windows = np.empty((len(positions), len(CARD_FEATURES)))
    habits = np.empty((len(positions), len(CARD_HABIT_FEATURES)))
    card_kernel(
        cards.ts,
        cards.amount,
        cards.terminal_key,
        cards.country_key,
        cards.device_key,
        cards.lat,
        cards.lon,
        cards.group_start,
        positions,
        windows,
    )
    card_habit_kernel(
        cards.ts,
        cards.amount,
        cards.terminal_key,
        cards.device_key,
        cards.channel_code,
        cards.merchant_group_code,
        cards.group_start,
        positions,
        habits,
    )
    out[:, : len(CARD_FEATURES)] = windows
    out[:, len(CARD_FEATURES) :] = habits
    return out


def terminal_count_offsets(label_delay_us: int) -> tuple[tuple[int, int], ...]:
    """What each column of a store's terminal counts covers, as (start, end) microseconds
    before t: a column counts the terminal's transactions at s with t - start <= s < t - end.
    The TERMINAL_WINDOWS ending at t first, then the same windows ending at t - label_delay."""
    recent = tuple((width, 0) for _, width in TERMINAL_WINDOWS)
    after_delay = tuple((label_delay_us + width, label_delay_us) for _, width in TERMINAL_WINDOWS)
    return recent + after_delay


def terminal_features_grouped(
    ts: IntArray,
    group_start: IntArray,
    positions: IntArray,
    stored_counts: FloatArray,
    label_delay_us: int,
    fraud_ts: IntArray,
    fraud_known_at: IntArray,
    fraud_low: IntArray,
    fraud_high: IntArray,
) -> FloatArray:
    """TERMINAL_FEATURES of the rows `positions` of `ts` (grouped per terminal, sorted by time).

    `stored_counts[p]` adds transactions kept outside `ts` (a store's earlier batches), one
    column per `terminal_count_offsets(label_delay_us)`. The confirmed frauds of position p's
    terminal are `fraud_ts[fraud_low[p]:fraud_high[p]]` (sorted), known from `fraud_known_at`.
    """
    if label_delay_us < 0:
        raise ValueError(f"label_delay_us must be >= 0, got {label_delay_us}")
    out = np.empty((len(positions), len(TERMINAL_FEATURES)))
    terminal_kernel(
        _contiguous(ts),
        _contiguous(group_start),
        _contiguous(positions),
        _contiguous(stored_counts.astype(np.float64, copy=False)),
        np.int64(label_delay_us),
        _contiguous(fraud_ts),
        _contiguous(fraud_known_at),
        _contiguous(fraud_low),
        _contiguous(fraud_high),
        out,
    )
    return out


@dataclass(frozen=True)
class TerminalFrauds:
    """A terminal's confirmed frauds: transaction times (sorted) and when each label was known."""

    ts: IntArray
    known_at: IntArray


@dataclass(frozen=True)
class BatchResult:
    features: FloatArray  # (len(rows), len(FEATURE_NAMES))
    card_history: dict[str, bytes]  # new state of every card in the batch
    # Per card, the rows of its new state that are the batch's own events (sorted, as in
    # card_history): what a store that appends to states adds.
    card_appended: dict[str, bytes] = field(default_factory=dict)


def _group_codes(names: list[str]) -> tuple[list[str], IntArray]:
    """Distinct names in first-seen order, and each name's index among them."""
    index: dict[str, int] = {}
    codes = np.fromiter(
        (index.setdefault(name, len(index)) for name in names), np.int64, len(names)
    )
    return list(index), codes


def batch_features(
    columns: EventColumns,
    rows: IntArray,
    card_history: Mapping[str, bytes],
    terminal_stored_counts: FloatArray,
    terminal_frauds: Mapping[str, TerminalFrauds],
    *,
    label_delay_us: int,
) -> BatchResult:
    """State + new events -> their features and the cards' new state (pure).

    `rows` are the batch positions of events never seen before (no duplicates).
    `card_history[card]` is the card's state: packed CARD_EVENT_DTYPE rows, usually sorted by
    (ts, tx_key), possibly with rows the card has dropped since (see `live_state_rows`).
    `terminal_stored_counts[i]` are the stored transactions of row i's terminal in each window
    of `terminal_count_offsets(label_delay_us)` relative to its time. Events of one
    card or terminal see each other in time order, whatever their order in `rows`.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cards, new_group = _group_codes([columns.card_id[row] for row in rows.tolist()])
    blobs = [card_history.get(card, b"") for card in cards]
    stored = np.frombuffer(b"".join(blobs), dtype=CARD_EVENT_DTYPE)
    stored_sizes = np.array([len(blob) for blob in blobs]) // CARD_EVENT_DTYPE.itemsize
    stored_group = np.repeat(np.arange(len(cards)), stored_sizes)
    live = live_state_rows(stored, stored_group, len(cards))
    if live is not None:
        stored, stored_group = stored[live], stored_group[live]
    merged, group, where = merged_card_rows(
        stored, stored_group, card_records(columns, rows), new_group, len(cards)
    )
    sizes = np.bincount(group, minlength=len(cards))
    starts = np.cumsum(sizes) - sizes
    positions = np.flatnonzero(where >= 0)

    features = np.empty((len(rows), len(FEATURE_NAMES)))
    card_block = slice(
        len(EVENT_FEATURES), len(EVENT_FEATURES) + len(CARD_FEATURES) + len(CARD_HABIT_FEATURES)
    )
    sequence = CardSequence.from_records(merged, starts[group])
    features[where[positions], card_block] = card_features_grouped(sequence, positions)
    features[:, : len(EVENT_FEATURES)] = event_features(columns, rows)
    features[:, card_block.stop :] = _batch_terminal_features(
        columns, rows, terminal_stored_counts, terminal_frauds, label_delay_us
    )
    kept, appended = _kept_histories(cards, merged, group, starts + sizes, where)
    return BatchResult(features, kept, appended)


def merged_card_rows(
    stored: np.ndarray, stored_group: IntArray, new: np.ndarray, new_group: IntArray, n_cards: int
) -> tuple[np.ndarray, IntArray, IntArray]:
    """Stored and new card rows (CARD_EVENT_DTYPE; `*_group` = each row's card, stored rows
    grouped by card in card order) as one array: each card's rows contiguous and sorted by
    (ts, tx_key), cards in order, a stored row before a new one with the same key. Also each
    row's card and its index among the new rows (-1: stored).

    Events mostly arrive in time order, so a card's stored rows are usually sorted and older
    than its new ones: then only the new rows are sorted and each card's two blocks laid side
    by side; otherwise (late events, states with late rows appended) all rows are sorted."""
    new_order = np.lexsort((new["tx_key"], new["ts"], new_group))
    new, new_group = new[new_order], new_group[new_order]
    stored_sizes = np.bincount(stored_group, minlength=n_cards)
    new_sizes = np.bincount(new_group, minlength=n_cards)
    stored_starts = np.cumsum(stored_sizes) - stored_sizes
    new_starts = np.cumsum(new_sizes) - new_sizes
    both = (stored_sizes > 0) & (new_sizes > 0)
    stored_last = stored_starts[both] + stored_sizes[both] - 1
    if (
        _sorted_by_key(stored, stored_group)
        and not _precedes(new[new_starts[both]], stored[stored_last]).any()
    ):
        sizes = stored_sizes + new_sizes
        starts = np.cumsum(sizes) - sizes
        at_stored = starts[stored_group] + np.arange(len(stored)) - stored_starts[stored_group]
        at_new = (starts + stored_sizes - new_starts)[new_group] + np.arange(len(new))
        merged = np.empty(len(stored) + len(new), dtype=CARD_EVENT_DTYPE)
        merged[at_stored] = stored
        merged[at_new] = new
        where = np.full(len(merged), -1, dtype=np.int64)
        where[at_new] = new_order
        return merged, np.repeat(np.arange(n_cards), sizes), where
    combined = np.concatenate((stored, new))
    group = np.concatenate((stored_group, new_group))
    where = np.concatenate((np.full(len(stored), -1, dtype=np.int64), new_order))
    order = np.lexsort((combined["tx_key"], combined["ts"], group))
    return combined[order], group[order], where[order]


def _precedes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise: a's (ts, tx_key) < b's."""
    return (a["ts"] < b["ts"]) | ((a["ts"] == b["ts"]) & (a["tx_key"] < b["tx_key"]))


def _sorted_by_key(rows: np.ndarray, group: IntArray) -> bool:
    """Whether each group's rows (contiguous) are sorted by (ts, tx_key)."""
    return not (_precedes(rows[1:], rows[:-1]) & (group[1:] == group[:-1])).any()


def live_state_rows(stored: np.ndarray, group: IntArray, n_cards: int) -> np.ndarray | None:
    """Which rows of stored card states (CARD_EVENT_DTYPE, `group` = each row's card, a card's
    rows contiguous, in any order) the card still keeps by the rule of `_kept_histories`,
    applied with the newest of its stored rows; None when it keeps them all.

    A store may append a batch's events to a card's state instead of rewriting it
    (RedisFeatureStore does), so the state also holds rows the card has dropped since. The rule
    composes (dropping by an earlier newest, adding rows, then dropping by the later newest
    keeps the same rows as dropping once by the later newest), so reading through this gives
    exactly the rows of a state rewritten at every batch."""
    if not len(stored):
        return None
    ts = stored["ts"]
    sizes = np.bincount(group, minlength=n_cards)
    starts = (np.cumsum(sizes) - sizes)[sizes > 0]
    newest = np.zeros(n_cards, dtype=np.int64)
    newest[sizes > 0] = np.maximum.reduceat(ts, starts)
    keep = ts >= (newest - CARD_LOOKBACK_US - DAY_US)[group]
    for card in np.flatnonzero(np.bincount(group[keep], minlength=n_cards) > MAX_CARD_HISTORY):
        rows = np.flatnonzero(keep & (group == card))
        order = np.lexsort((stored["tx_key"][rows], ts[rows]))
        keep[rows[order[:-MAX_CARD_HISTORY]]] = False
    return None if keep.all() else keep


def canonical_card_state(packed: bytes) -> bytes:
    """A card's stored rows as a state rewritten at every batch would hold them: the rows it
    keeps (`live_state_rows`), sorted by (ts, tx_key). For comparing states written by
    different batchings."""
    rows = np.frombuffer(packed, dtype=CARD_EVENT_DTYPE)
    live = live_state_rows(rows, np.zeros(len(rows), dtype=np.int64), 1)
    if live is not None:
        rows = rows[live]
    return rows[np.lexsort((rows["tx_key"], rows["ts"]))].tobytes()


def _kept_histories(
    cards: list[str], merged: np.ndarray, group: IntArray, ends: IntArray, where: IntArray
) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """What each card keeps: its latest MAX_CARD_HISTORY events within the lookback (+1 day of
    slack for late events) of its newest event (kept rows are a suffix of each card's group);
    and which of those are the batch's new events (`where` >= 0)."""
    newest = merged["ts"][ends - 1]
    keep = (merged["ts"] >= (newest - CARD_LOOKBACK_US - DAY_US)[group]) & (
        np.arange(len(merged)) >= (ends - MAX_CARD_HISTORY)[group]
    )
    return _split_by_card(cards, merged, group, keep), _split_by_card(
        cards, merged, group, keep & (where >= 0)
    )


def _split_by_card(
    cards: list[str], merged: np.ndarray, group: IntArray, mask: np.ndarray
) -> dict[str, bytes]:
    raw = merged[mask].tobytes()
    sizes = np.bincount(group[mask], minlength=len(cards)) * CARD_EVENT_DTYPE.itemsize
    highs = np.cumsum(sizes).tolist()
    lows = (np.cumsum(sizes) - sizes).tolist()
    return {card: raw[low:high] for card, low, high in zip(cards, lows, highs, strict=True)}


def _batch_terminal_features(
    columns: EventColumns,
    rows: IntArray,
    stored_counts: FloatArray,
    terminal_frauds: Mapping[str, TerminalFrauds],
    label_delay_us: int,
) -> FloatArray:
    terminals, group = _group_codes([columns.terminal_id[row] for row in rows.tolist()])
    ts = columns.ts[rows]
    order = np.lexsort((ts, group))
    sorted_group = group[order]
    sizes = np.bincount(group, minlength=len(terminals))
    starts = np.cumsum(sizes) - sizes
    fraud_ts: list[IntArray] = [np.empty(0, dtype=np.int64)]
    fraud_known: list[IntArray] = [np.empty(0, dtype=np.int64)]
    fraud_counts = np.zeros(len(terminals), dtype=np.int64)
    for index, terminal in enumerate(terminals):
        frauds = terminal_frauds.get(terminal)
        if frauds is not None:
            fraud_ts.append(frauds.ts)
            fraud_known.append(frauds.known_at)
            fraud_counts[index] = len(frauds.ts)
    fraud_high = np.cumsum(fraud_counts)
    computed = terminal_features_grouped(
        ts[order],
        starts[sorted_group],
        np.arange(len(rows), dtype=np.int64),
        stored_counts[order],
        label_delay_us,
        np.concatenate(fraud_ts),
        np.concatenate(fraud_known),
        (fraud_high - fraud_counts)[sorted_group],
        fraud_high[sorted_group],
    )
    out = np.empty_like(computed)
    out[order] = computed
    return out


def feature_dicts(matrix: FloatArray) -> list[dict[str, float | None]]:
    """Rows of a feature matrix -> dicts in FEATURE_NAMES order, NaN -> None."""
    values = matrix.astype(object)
    values[np.isnan(matrix)] = None
    return [dict(zip(FEATURE_NAMES, row, strict=True)) for row in values.tolist()]


def features_without_history(event: Mapping[str, Any]) -> dict[str, float | None]:
    """Features of `event` for a card and terminal with no history (degraded mode); the same
    whatever the label delay, since no history means empty windows."""
    return feature_dicts(vector_without_history(event)[None, :])[0]


def vector_without_history(event: Mapping[str, Any]) -> FloatArray:
    """`features_without_history` as one row in FEATURE_NAMES order (NaN for missing)."""
    columns = columns_from_events([event])
    rows = np.zeros(1, dtype=np.int64)
    no_counts = np.zeros((1, 2 * len(TERMINAL_WINDOWS)))
    result = batch_features(columns, rows, {}, no_counts, {}, label_delay_us=0)
    return result.features[0]
