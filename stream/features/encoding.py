"""Encodings of raw events into the columns the feature kernels read.

Identifiers become stable 64-bit keys (blake2b, so a key means the same in every process and
release), categories become small stable codes (UNKNOWN_CODE for missing or unknown values) and
timestamps become microseconds since the epoch. Both the stream (dict events) and the training
replay (DataFrame columns) use these functions, so both see identical numbers.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from fraud.errors import ValidationError

UNKNOWN_CODE = 0  # reserved for missing or unknown categories
CHANNEL_CODES: Mapping[str, int] = {"pos": 1, "ecom": 2, "atm": 3}
# Merchant category (ISO 18245) groups. Codes are stable: append new groups, never renumber.
# Later entries override earlier ones, so the specific (fraud-prone, cash-like) codes listed after
# the broad ISO ranges take precedence.
MERCHANT_CATEGORY_GROUPS: tuple[tuple[int, str, tuple[tuple[int, int], ...]], ...] = (
    (1, "agricultural", ((1, 1499),)),
    (2, "contracted_services", ((1500, 2999),)),
    (3, "airlines", ((3000, 3299), (4511, 4511))),
    (4, "car_rental", ((3300, 3499), (7512, 7512))),
    (5, "lodging", ((3500, 3999), (7011, 7011))),
    (6, "transportation", ((4000, 4799),)),
    (7, "utilities_telecom", ((4800, 4999),)),
    (8, "retail", ((5000, 5599),)),
    (9, "clothing", ((5600, 5699),)),
    (10, "miscellaneous_stores", ((5700, 7299),)),
    (11, "business_services", ((7300, 7999),)),
    (12, "professional_services", ((8000, 8999),)),
    (13, "government", ((9000, 9999),)),
    (14, "grocery", ((5411, 5411), (5422, 5422), (5441, 5451), (5499, 5499))),
    (15, "restaurants", ((5812, 5814),)),
    (16, "fuel", ((5541, 5542), (5983, 5983))),
    (17, "electronics", ((5732, 5734), (5045, 5045))),
    (18, "jewelry", ((5944, 5944),)),
    (19, "digital_goods", ((5815, 5818),)),
    (20, "direct_marketing", ((5960, 5969),)),
    (21, "money_transfer", ((4829, 4829), (6538, 6538))),
    (22, "cash", ((6010, 6011),)),
    (23, "quasi_cash", ((6050, 6051), (6540, 6540))),
    (24, "gambling", ((7800, 7802), (7995, 7995))),
)

# One row of a card's state: what later events of the card need to know about this one.
CARD_EVENT_DTYPE = np.dtype(
    [
        ("ts", "<i8"),
        ("tx_key", "<i8"),  # orders events with equal timestamps the same way everywhere
        ("amount", "<f8"),
        ("terminal_key", "<i8"),
        ("country_key", "<i8"),  # 0: missing
        ("device_key", "<i8"),  # 0: missing
        ("lat", "<f8"),
        ("lon", "<f8"),
        ("channel_code", "u1"),  # CHANNEL_CODES
        ("merchant_group_code", "u1"),  # MERCHANT_CATEGORY_GROUPS
    ]
)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def timestamp_us(value: Any) -> int:
    """ISO 8601 string or datetime -> microseconds since the epoch (naive values are UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(
                f"timestamp {value!r} is not ISO 8601", field="timestamp", rule="format"
            ) from None
    if not isinstance(value, datetime):
        raise ValidationError(
            f"timestamp must be an ISO 8601 string, got {type(value).__name__}",
            field="timestamp",
            rule="type",
        )
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _ONE_US


def string_key(value: Any) -> int:
    """A stable non-zero 64-bit key of an identifier; 0 means missing."""
    if value is None or value != value:  # None or NaN
        return 0
    digest = hashlib.blake2b(str(value).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True) or 1


# Terminals, countries and devices repeat; transaction ids do not.
_repeated_key = functools.lru_cache(maxsize=1 << 16)(string_key)


def channel_code(value: Any) -> int:
    """pos/ecom/atm -> CHANNEL_CODES; anything else (or missing) -> UNKNOWN_CODE."""
    return CHANNEL_CODES.get(value, UNKNOWN_CODE) if isinstance(value, str) else UNKNOWN_CODE


@functools.cache
def _merchant_group_table() -> IntArray:
    table = np.full(10_000, UNKNOWN_CODE, dtype=np.int64)
    for code, _, ranges in MERCHANT_CATEGORY_GROUPS:
        for low, high in ranges:
            table[low : high + 1] = code
    return table


def merchant_category_group_code(value: Any) -> int:
    """4-digit MCC (string, or int when a CSV reader parsed it) -> group code; else UNKNOWN_CODE."""
    if isinstance(value, str):
        if len(value) != 4 or not value.isdigit():
            return UNKNOWN_CODE
        number = int(value)
    elif isinstance(value, int | np.integer) and not isinstance(value, bool):
        number = int(value)
    elif isinstance(value, float | np.floating) and value.is_integer():
        number = int(value)
    else:
        return UNKNOWN_CODE
    return int(_merchant_group_table()[number]) if 0 <= number <= 9999 else UNKNOWN_CODE


def _float_or_nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def positive_amount(value: Any) -> float:
    amount = float(value)
    if not 0.0 < amount < math.inf:
        raise ValueError(f"amount must be a positive number, got {value!r}")
    return amount


@dataclass(frozen=True)
class EventColumns:
    """A batch of events as columns: what the kernels read. Built from dicts or a DataFrame."""

    transaction_id: Sequence[str]
    card_id: Sequence[str]
    terminal_id: Sequence[str]
    ts: IntArray
    tx_key: IntArray
    amount: FloatArray
    terminal_key: IntArray
    country_key: IntArray
    device_key: IntArray
    terminal_lat: FloatArray
    terminal_lon: FloatArray
    customer_lat: FloatArray
    customer_lon: FloatArray
    channel_code: IntArray
    merchant_group_code: IntArray

    def __len__(self) -> int:
        return len(self.transaction_id)


def columns_from_events(events: Sequence[Mapping[str, Any]]) -> EventColumns:
    """Encode transaction dicts; optional fields (and category/channel) may be absent."""
    tx_ids: list[str] = []
    cards: list[str] = []
    terminals: list[str] = []
    ts: list[int] = []
    amount: list[float] = []
    rest: list[tuple[Any, ...]] = []
    for index, event in enumerate(events):
        try:
            tx_ids.append(str(event["transaction_id"]))
            cards.append(str(event["card_id"]))
            terminals.append(str(event["terminal_id"]))
            ts.append(timestamp_us(event["timestamp"]))
            amount.append(positive_amount(event["amount"]))
            get = event.get
            rest.append(
                (
                    _repeated_key(get("country")),
                    _repeated_key(get("device_id")),
                    _float_or_nan(get("terminal_lat")),
                    _float_or_nan(get("terminal_lon")),
                    _float_or_nan(get("customer_lat")),
                    _float_or_nan(get("customer_lon")),
                    channel_code(get("channel")),
                    merchant_category_group_code(get("merchant_category")),
                )
            )
        except KeyError as exc:
            raise ValidationError(
                f"event {index} has no field {exc.args[0]!r}",
                field=str(exc.args[0]),
                rule="required",
            ) from None
        except (TypeError, ValueError, ValidationError) as exc:
            where = f"event {index} ({event.get('transaction_id')!r})"
            raise ValidationError(f"{where}: {exc}", rule="type") from None
    columns = list(zip(*rest, strict=True)) if rest else [()] * 8
    ints = [
        np.array(column, dtype=np.int64)
        for column in (columns[0], columns[1], columns[6], columns[7])
    ]
    floats = [np.array(column, dtype=np.float64) for column in columns[2:6]]
    return EventColumns(
        transaction_id=tx_ids,
        card_id=cards,
        terminal_id=terminals,
        ts=np.array(ts, dtype=np.int64),
        tx_key=np.array([string_key(tx) for tx in tx_ids], dtype=np.int64),
        amount=np.array(amount, dtype=np.float64),
        terminal_key=np.array([_repeated_key(term) for term in terminals], dtype=np.int64),
        country_key=ints[0],
        device_key=ints[1],
        terminal_lat=floats[0],
        terminal_lon=floats[1],
        customer_lat=floats[2],
        customer_lon=floats[3],
        channel_code=ints[2],
        merchant_group_code=ints[3],
    )


def card_records(columns: EventColumns, rows: IntArray | None = None) -> np.ndarray:
    """The card-state rows (CARD_EVENT_DTYPE) of the events `rows` (all when None)."""
    take = slice(None) if rows is None else rows
    records = np.empty(len(columns) if rows is None else len(rows), dtype=CARD_EVENT_DTYPE)
    records["ts"] = columns.ts[take]
    records["tx_key"] = columns.tx_key[take]
    records["amount"] = columns.amount[take]
    records["terminal_key"] = columns.terminal_key[take]
    records["country_key"] = columns.country_key[take]
    records["device_key"] = columns.device_key[take]
    records["lat"] = columns.terminal_lat[take]
    records["lon"] = columns.terminal_lon[take]
    records["channel_code"] = columns.channel_code[take]
    records["merchant_group_code"] = columns.merchant_group_code[take]
    return records
