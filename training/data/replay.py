"""Point-in-time training sets: replay history through the stream's feature definition.

Every row gets the features the stream would have computed when the transaction arrived: only
earlier transactions of its card and terminal, and only fraud labels already known, a history
row's label becoming known at its timestamp + label_delay. The same label_delay sets where the
terminal fraud-rate windows end (t - label_delay, see stream/features/definition.py), so every label inside
them is known in training as it is in the stream; the stream store serving the model must be
built with this label_delay. The numbers come from the same kernels
the stream stores call (stream/features/definition.py); tests/integration/test_feature_parity.py checks that
the two paths agree exactly.

Because a card feature depends only on the card's earlier events (and a terminal feature only on
the terminal's), the replay visits the history card by card and terminal by terminal, each in time
order, in a few compiled passes; the result equals a row-by-row replay in global time order.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from rich.progress import Progress

from fraud.errors import ValidationError
from stream.features import (
    CARD_FEATURES,
    CARD_HABIT_FEATURES,
    EVENT_FEATURES,
    FEATURE_NAMES,
    TERMINAL_WINDOWS,
    CardSequence,
    EventColumns,
    FloatArray,
    IntArray,
    card_features_grouped,
    channel_code,
    event_features,
    merchant_category_group_code,
    string_key,
    terminal_features_grouped,
)

REQUIRED_COLUMNS = ("transaction_id", "timestamp", "card_id", "terminal_id", "amount", "is_fraud")
PROGRESS_MIN_ROWS = 200_000
_CHUNK_ROWS = 100_000


def replay_features(
    history: pd.DataFrame, label_delay: timedelta, *, show_progress: bool | None = None
) -> pd.DataFrame:
    """Point-in-time features of every history row.

    Returns `transaction_id` followed by FEATURE_NAMES (float64, missing = NaN), one row per
    history row, sorted by (timestamp, transaction_id). `timestamp` may be datetime64 or ISO
    8601 strings. Columns other than the transaction fields (e.g. customer attributes) are never
    read. Progress is shown for large inputs unless `show_progress` is False.
    """
    missing = [name for name in REQUIRED_COLUMNS if name not in history.columns]
    if missing:
        raise ValidationError(
            f"history lacks column(s) {missing}", field=missing[0], rule="required"
        )
    if label_delay < timedelta(0):
        raise ValidationError(f"label_delay must be >= 0, got {label_delay}", field="label_delay")
    for name in REQUIRED_COLUMNS:
        if history[name].isna().any():
            raise ValidationError(f"history column {name!r} has missing values", field=name)
    ts = timestamps_us(history["timestamp"])
    transaction_ids = history["transaction_id"].astype(str).reset_index(drop=True)
    if transaction_ids.duplicated().any():
        examples = sorted(set(transaction_ids[transaction_ids.duplicated()]))[:5]
        raise ValidationError(
            f"history has repeated transaction ids, e.g. {examples}", field="transaction_id"
        )
    order = _time_order(ts, transaction_ids)
    frame = history if order is None else history.iloc[order]
    ts = ts if order is None else ts[order]
    transaction_ids = transaction_ids if order is None else transaction_ids.iloc[order]
    card_codes = pd.factorize(frame["card_id"].astype(str))[0].astype(np.int64)
    columns = columns_from_frame(frame, ts, card_codes)
    is_fraud = _fraud_flags(frame["is_fraud"])
    delay_us = label_delay // timedelta(microseconds=1)
    show = len(frame) >= PROGRESS_MIN_ROWS if show_progress is None else show_progress
    with Progress(transient=True, disable=not show) as progress:
        task = progress.add_task("replaying features", total=3 * len(frame))

        def advance(rows: int) -> None:
            progress.advance(task, rows)

        matrix = replay_columns(columns, card_codes, is_fraud, delay_us, advance)
    out = pd.DataFrame(matrix, columns=list(FEATURE_NAMES), copy=False)
    out.insert(0, "transaction_id", transaction_ids.to_numpy())
    return out


def replay_columns(
    columns: EventColumns,
    card_codes: IntArray,
    is_fraud: npt.NDArray[np.bool_],
    label_delay_us: int,
    advance: Callable[[int], None] = lambda rows: None,
) -> FloatArray:
    """Feature matrix (rows of `columns`, FEATURE_NAMES order) of a complete history.

    `card_codes` tell which rows share a card; terminal_key which share a terminal.
    """
    n = len(columns)
    # Column-major, as the DataFrame stores it. Rows are computed in time order (the kernels
    # take positions in any order), so each pass writes whole rows in sequence.
    matrix = np.empty((n, len(FEATURE_NAMES)), order="F")
    card_block = slice(
        len(EVENT_FEATURES), len(EVENT_FEATURES) + len(CARD_FEATURES) + len(CARD_HABIT_FEATURES)
    )
    for chunk in _chunks(n):
        matrix[chunk, : card_block.start] = event_features(columns, chunk)
        advance(len(chunk))

    by_card = np.lexsort((columns.tx_key, columns.ts, card_codes))
    cards = CardSequence(
        ts=columns.ts[by_card],
        amount=columns.amount[by_card],
        terminal_key=columns.terminal_key[by_card],
        country_key=columns.country_key[by_card],
        device_key=columns.device_key[by_card],
        lat=columns.terminal_lat[by_card],
        lon=columns.terminal_lon[by_card],
        channel_code=columns.channel_code[by_card],
        merchant_group_code=columns.merchant_group_code[by_card],
        group_start=_group_starts(card_codes[by_card]),
    )
    card_position = _inverse(by_card)
    for chunk in _chunks(n):
        matrix[chunk, card_block] = card_features_grouped(cards, card_position[chunk])
        advance(len(chunk))

    by_terminal = np.lexsort((columns.ts, columns.terminal_key))
    terminal_ts = columns.ts[by_terminal]
    terminal_sorted = columns.terminal_key[by_terminal]
    frauds = np.flatnonzero(is_fraud[by_terminal])
    fraud_terminal = terminal_sorted[frauds]
    fraud_ts = terminal_ts[frauds]
    no_stored = np.zeros((_CHUNK_ROWS, 2 * len(TERMINAL_WINDOWS)))
    terminal_start = _group_starts(terminal_sorted)
    terminal_position = _inverse(by_terminal)
    for chunk in _chunks(n):
        positions = terminal_position[chunk]
        matrix[chunk, card_block.stop :] = terminal_features_grouped(
            terminal_ts,
            terminal_start,
            positions,
            no_stored[: len(chunk)],
            label_delay_us,
            fraud_ts,
            fraud_ts + label_delay_us,
            np.searchsorted(fraud_terminal, terminal_sorted[positions], side="left"),
            np.searchsorted(fraud_terminal, terminal_sorted[positions], side="right"),
        )
        advance(len(chunk))
    return matrix


def _inverse(order: IntArray) -> IntArray:
    """For a permutation `order` (sorted position -> row), the row -> sorted position map."""
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return inverse


def _time_order(ts: IntArray, transaction_ids: pd.Series) -> IntArray | None:
    """Row order by (timestamp, transaction_id), or None when the rows are in that order."""
    step = np.diff(ts)
    if (step >= 0).all():
        ties = np.flatnonzero(step == 0)
        ids = transaction_ids.to_numpy(dtype=object)[np.concatenate((ties, ties + 1))]
        if (ids[: len(ties)] < ids[len(ties) :]).all():
            return None
    frame = pd.DataFrame({"ts": ts, "tx": transaction_ids})
    return frame.sort_values(["ts", "tx"], kind="stable").index.to_numpy()


def _chunks(n: int) -> list[IntArray]:
    return [np.arange(start, min(n, start + _CHUNK_ROWS)) for start in range(0, n, _CHUNK_ROWS)]


def _group_starts(sorted_codes: IntArray) -> IntArray:
    """For codes sorted into runs, the index where each row's run begins."""
    if len(sorted_codes) == 0:
        return np.empty(0, dtype=np.int64)
    new_run = np.empty(len(sorted_codes), dtype=bool)
    new_run[0] = True
    new_run[1:] = sorted_codes[1:] != sorted_codes[:-1]
    starts = np.flatnonzero(new_run)
    return np.repeat(starts, np.diff(np.append(starts, len(sorted_codes)))).astype(np.int64)


def timestamps_us(column: pd.Series) -> IntArray:
    """datetime64 (naive = UTC) or ISO 8601 strings -> int64 microseconds since the epoch."""
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        parsed = column.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(column.dtype):
        parsed = column.dt.tz_localize("UTC")
    else:
        try:
            parsed = pd.to_datetime(column, utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise ValidationError(f"history column 'timestamp': {exc}", field="timestamp") from None
    if parsed.isna().any():
        raise ValidationError("history column 'timestamp' has missing values", field="timestamp")
    return parsed.dt.as_unit("us").astype("int64").to_numpy()


def _mapped(column: pd.Series | None, encode: Callable[[Any], int], n: int) -> IntArray:
    """Encode each distinct value once with the stream's scalar encoder; missing -> encode(None)."""
    if column is None:
        return np.full(n, encode(None), dtype=np.int64)
    codes, uniques = pd.factorize(column)
    table = np.array([encode(value) for value in uniques] + [encode(None)], dtype=np.int64)
    return table[codes]  # code -1 (missing) picks the last entry


def _equality_keys(column: pd.Series | None, n: int) -> IntArray:
    """Keys of an identifier column: 1, 2, ... per distinct value, 0 when missing.

    The stream hashes identifiers instead; the kernels only compare keys for equality, so both
    give the same features (barring a 64-bit hash collision).
    """
    if column is None:
        return np.zeros(n, dtype=np.int64)
    return pd.factorize(column)[0].astype(np.int64) + 1


def _floats(column: pd.Series | None, n: int) -> FloatArray:
    if column is None:
        return np.full(n, np.nan)
    try:
        return pd.to_numeric(column, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            f"history column {column.name!r}: {exc}", field=str(column.name)
        ) from None


def _tie_keys(transaction_ids: pd.Series, ts: IntArray, card_codes: IntArray) -> IntArray:
    """The stream's tx_key for rows sharing card and timestamp (it orders them); 0 elsewhere."""
    keys = np.zeros(len(ts), dtype=np.int64)
    tied = pd.DataFrame({"card": card_codes, "ts": ts}).duplicated(keep=False).to_numpy()
    if tied.any():
        keys[tied] = [string_key(value) for value in transaction_ids[tied].tolist()]
    return keys


def columns_from_frame(frame: pd.DataFrame, ts: IntArray, card_codes: IntArray) -> EventColumns:
    """The EventColumns of history rows (in order), numerically what the stream's encoder gives.

    Identifier keys are equality codes rather than hashes (see _equality_keys) and tx_key is
    only set where it matters, on rows that share card and timestamp.
    """
    n = len(frame)

    def column(name: str) -> pd.Series | None:
        return frame[name] if name in frame.columns else None

    amount = _floats(frame["amount"], n)
    valid = (amount > 0) & np.isfinite(amount)  # the rule of the stream's positive_amount
    if not valid.all():
        bad = frame["transaction_id"][~valid].head(5).tolist()
        raise ValidationError(
            f"history has amounts that are not positive numbers, e.g. transactions {bad}",
            field="amount",
        )
    transaction_ids = frame["transaction_id"].astype(str)
    return EventColumns(
        transaction_id=transaction_ids.array,
        card_id=frame["card_id"].astype(str).array,
        terminal_id=frame["terminal_id"].astype(str).array,
        ts=np.ascontiguousarray(ts, dtype=np.int64),
        tx_key=_tie_keys(transaction_ids, ts, card_codes),
        amount=amount,
        terminal_key=_equality_keys(frame["terminal_id"].astype(str), n),
        country_key=_equality_keys(column("country"), n),
        device_key=_equality_keys(column("device_id"), n),
        terminal_lat=_floats(column("terminal_lat"), n),
        terminal_lon=_floats(column("terminal_lon"), n),
        customer_lat=_floats(column("customer_lat"), n),
        customer_lon=_floats(column("customer_lon"), n),
        channel_code=_mapped(column("channel"), channel_code, n),
        merchant_group_code=_mapped(column("merchant_category"), merchant_category_group_code, n),
    )


def _fraud_flags(column: pd.Series) -> np.ndarray:
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.all((values == 0) | (values == 1)):
        raise ValidationError("history column 'is_fraud' must hold 0 or 1", field="is_fraud")
    return values == 1
