"""Transactions as parallel numpy arrays, and their conversion to files and events.

Generators work on `Rows` (integer ids, epoch seconds); only at the edge do rows become
the contract's strings: an Arrow table for the history files, dicts for live events.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas import load_schema
from simulator import catalog as cat
from simulator.bank import Bank

SCENARIO_NAMES = (
    "card_testing",
    "account_takeover",
    "compromised_terminal",
    "high_amount",
    "impossible_travel",
    "mimicry",
    "atm_cashout",
)
GENUINE = 0  # scenario code of genuine rows; fraud rows carry 1 + index in SCENARIO_NAMES


def _arrow_type(name: str, spec: dict[str, Any]) -> pa.DataType:
    """The Parquet column type of a history field, from its JSON Schema type."""
    if name == "timestamp":
        return pa.timestamp("us", tz="UTC")
    kinds = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
    kind = next(k for k in kinds if k != "null")
    return {"string": pa.string(), "number": pa.float64(), "integer": pa.int64()}[kind]


def _history_fields() -> dict[str, dict[str, Any]]:
    return {**load_schema("transaction")["properties"], **load_schema("history_row")["properties"]}


# The history file's columns and types, in the contract's order (schemas/v1/history_row.json).
HISTORY_SCHEMA = pa.schema(
    [(name, _arrow_type(name, spec)) for name, spec in _history_fields().items()]
)
CUSTOMER_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("birth_year", pa.int64()),
        ("gender", pa.string()),
        ("home_lat", pa.float64()),
        ("home_lon", pa.float64()),
        ("segment", pa.string()),
    ]
)
_CHANNELS = pa.array(cat.CHANNELS)
_MCCS = pa.array(cat.MCC_CODES)
_COUNTRIES = pa.array(cat.COUNTRIES)
_SCENARIOS = pa.array([None, *SCENARIO_NAMES], pa.string())


@dataclass
class Rows:
    """A batch of transactions; every field has one entry per transaction."""

    time: np.ndarray  # int64 epoch seconds
    card: np.ndarray  # int64 card index
    terminal: np.ndarray  # int64 terminal index
    amount: np.ndarray  # float64 EUR, 2 decimals
    device: np.ndarray  # int64 device index, -1 for none
    scenario: np.ndarray  # int64, GENUINE or 1 + index in SCENARIO_NAMES

    def __len__(self) -> int:
        return len(self.time)

    @classmethod
    def empty(cls) -> Rows:
        ints = np.zeros(0, dtype=np.int64)
        return cls(ints, ints, ints, np.zeros(0), ints, ints)

    @classmethod
    def concat(cls, parts: list[Rows]) -> Rows:
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    def take(self, index: np.ndarray | slice) -> Rows:
        return Rows(*(getattr(self, f.name)[index] for f in fields(self)))

    def sorted(self) -> Rows:
        """By time; ties keep generation order, so the result is deterministic."""
        return self.take(np.argsort(self.time, kind="stable"))

    def split(self, before: int) -> tuple[Rows, Rows]:
        """(rows with time < before, the rest)."""
        early = self.time < before
        return self.take(np.flatnonzero(early)), self.take(np.flatnonzero(~early))


def scenario_code(name: str) -> int:
    return 1 + SCENARIO_NAMES.index(name)


def history_table(rows: Rows, bank: Bank, first_number: int) -> pa.Table:
    """Rows (already sorted) as the history contract, ids numbered from `first_number`."""
    n = len(rows)
    customer = bank.card_customer[rows.card]
    terminal = rows.terminal
    ids = pc.utf8_lpad(
        pa.array(np.arange(first_number, first_number + n)).cast(pa.string()), 9, "0"
    )
    is_ecom = bank.terminal_channel[terminal] == cat.ECOM
    return pa.Table.from_arrays(
        [
            pc.binary_join_element_wise("tx-", ids, ""),
            pa.array(rows.time * 1_000_000, pa.int64()).cast(
                HISTORY_SCHEMA.field("timestamp").type
            ),
            bank.card_ids.take(rows.card),
            bank.customer_ids.take(customer),
            bank.terminal_ids.take(terminal),
            _MCCS.take(bank.terminal_mcc[terminal]),
            _CHANNELS.take(bank.terminal_channel[terminal]),
            pa.array(rows.amount, pa.float64()),
            pa.array(np.full(n, cat.CURRENCY)),
            pa.array(bank.terminal_lat[terminal], pa.float64(), mask=is_ecom),
            pa.array(bank.terminal_lon[terminal], pa.float64(), mask=is_ecom),
            pa.array(bank.home_lat[customer], pa.float64()),
            pa.array(bank.home_lon[customer], pa.float64()),
            pa.array(bank.device_ids(rows.device), pa.string()),
            _COUNTRIES.take(bank.terminal_country[terminal]),
            pa.array((rows.scenario != GENUINE).astype(np.int64)),
            _SCENARIOS.take(rows.scenario),
        ],
        schema=HISTORY_SCHEMA,
    )


def csv_view(table: pa.Table) -> pa.Table:
    """The same table with the timestamp as an ISO 8601 string (seconds, suffix Z)."""
    seconds = table["timestamp"].cast(pa.timestamp("s", tz="UTC"))
    iso = pc.strftime(seconds, format="%Y-%m-%dT%H:%M:%SZ")
    return table.set_column(1, "timestamp", iso)


def customers_table(bank: Bank) -> pa.Table:
    return pa.Table.from_arrays(
        [
            bank.customer_ids,
            pa.array(bank.birth_year, pa.int64()),
            pa.array(np.array(cat.GENDERS)[bank.gender]),
            pa.array(bank.home_lat, pa.float64()),
            pa.array(bank.home_lon, pa.float64()),
            pa.array(np.array(cat.SEGMENTS)[bank.segment]),
        ],
        schema=CUSTOMER_SCHEMA,
    )


def history_records(table: pa.Table) -> list[dict[str, Any]]:
    """Rows of a history table as dicts the way `schemas.validator("history_row")` expects them:
    nulls dropped, timestamp as the ISO string."""
    records = csv_view(table).to_pylist()
    return [{k: v for k, v in record.items() if v is not None} for record in records]


def iso_times(seconds: np.ndarray) -> list[str]:
    """Epoch seconds -> ['2026-03-02T00:00:07.000Z', ...] (UTC, milliseconds)."""
    stamps = np.datetime_as_string(seconds.astype("datetime64[s]").astype("datetime64[ms]"))
    return [f"{stamp}Z" for stamp in stamps]


def live_events(
    rows: Rows, bank: Bank, ids: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows as `transactions` events, each stamped with its own (simulated) time, and their
    ground-truth records."""
    timestamps = iso_times(rows.time)
    customer = bank.card_customer[rows.card]
    terminal = rows.terminal
    channel = bank.terminal_channel[terminal]
    card_ids = bank.card_ids.take(rows.card).to_pylist()
    customer_ids = bank.customer_ids.take(customer).to_pylist()
    terminal_ids = bank.terminal_ids.take(terminal).to_pylist()
    devices = bank.device_ids(rows.device)
    events: list[dict[str, Any]] = []
    truth: list[dict[str, Any]] = []
    for i in range(len(rows)):
        t = int(terminal[i])
        event: dict[str, Any] = {
            "transaction_id": ids[i],
            "timestamp": timestamps[i],
            "card_id": card_ids[i],
            "customer_id": customer_ids[i],
            "terminal_id": terminal_ids[i],
            "merchant_category": cat.MCC_CODES[bank.terminal_mcc[t]],
            "channel": cat.CHANNELS[channel[i]],
            "amount": float(rows.amount[i]),
            "currency": cat.CURRENCY,
        }
        if channel[i] != cat.ECOM:
            event["terminal_lat"] = float(bank.terminal_lat[t])
            event["terminal_lon"] = float(bank.terminal_lon[t])
        event["customer_lat"] = float(bank.home_lat[customer[i]])
        event["customer_lon"] = float(bank.home_lon[customer[i]])
        if devices[i] is not None:
            event["device_id"] = devices[i]
        event["country"] = cat.COUNTRIES[bank.terminal_country[t]]
        code = int(rows.scenario[i])
        events.append(event)
        truth.append(
            {
                "transaction_id": ids[i],
                "is_fraud": int(code != GENUINE),
                "fraud_scenario": SCENARIO_NAMES[code - 1] if code != GENUINE else None,
            }
        )
    return events, truth
