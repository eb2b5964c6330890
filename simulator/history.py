"""Write a labelled history: transactions and customers as Parquet and CSV, plus a manifest.

    manifest = write_history(Path("data/history"), customers=5000, days=60, seed=1)

Generation runs one day at a time and files are written incrementally (Parquet row groups,
CSV appends), so memory stays bounded whatever the length. The same arguments always give
byte-identical files (the manifest records their sha256).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from simulator.bank import Bank
from simulator.defaults import DEFAULT_START
from simulator.engine import Engine
from simulator.rows import (
    CUSTOMER_SCHEMA,
    GENUINE,
    HISTORY_SCHEMA,
    SCENARIO_NAMES,
    csv_view,
    customers_table,
    history_table,
)
from simulator.scenarios import DAY, DEFAULT_SCENARIOS

ROW_GROUP_ROWS = 131_072
TRANSACTIONS = "transactions"
CUSTOMERS = "customers"
MANIFEST = "manifest.json"
FILES = (
    f"{TRANSACTIONS}.parquet",
    f"{TRANSACTIONS}.csv",
    f"{CUSTOMERS}.parquet",
    f"{CUSTOMERS}.csv",
)
# Parquet metadata holds no clock values (only the schema and "created_by"), so the same
# tables written with the same options give the same bytes.
_PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "write_statistics": True}


class _TableSink:
    """One table written to Parquet (row groups of ROW_GROUP_ROWS) and CSV side by side."""

    def __init__(self, out: Path, name: str, schema: pa.Schema) -> None:
        self._parquet = pq.ParquetWriter(out / f"{name}.parquet", schema, **_PARQUET_OPTIONS)
        self._iso_time = "timestamp" in schema.names
        csv_schema = csv_view(schema.empty_table()).schema if self._iso_time else schema
        self._csv = pa_csv.CSVWriter(out / f"{name}.csv", csv_schema)
        self._buffer: list[pa.Table] = []
        self._buffered = 0

    def write(self, table: pa.Table) -> None:
        self._buffer.append(table)
        self._buffered += table.num_rows
        if self._buffered >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._buffered:
            return
        table = pa.concat_tables(self._buffer).combine_chunks()
        self._parquet.write_table(table, row_group_size=ROW_GROUP_ROWS)
        self._csv.write_table(csv_view(table) if self._iso_time else table)
        self._buffer, self._buffered = [], 0

    def close(self) -> None:
        self._flush()
        self._parquet.close()
        self._csv.close()


def write_history(
    out: Path,
    customers: int,
    days: int,
    seed: int,
    start: dt.date = DEFAULT_START,
    scenarios: Sequence[str] = DEFAULT_SCENARIOS,
    on_day: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Simulate `days` days from `start` and write the files into `out`; returns the manifest.

    `on_day(day_index, rows_so_far)` is called after each day (for progress display).
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    out.mkdir(parents=True, exist_ok=True)
    bank = Bank.build(customers, seed)
    engine = Engine(bank, seed, scenarios)
    first_day = int(dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC).timestamp())

    sink = _TableSink(out, TRANSACTIONS, HISTORY_SCHEMA)
    rows_written = 0
    by_scenario = np.zeros(len(SCENARIO_NAMES) + 1, dtype=np.int64)
    try:
        for day in range(days):
            rows = engine.day(first_day + day * DAY)
            sink.write(history_table(rows, bank, first_number=rows_written + 1))
            rows_written += len(rows)
            by_scenario += np.bincount(rows.scenario, minlength=len(by_scenario))
            if on_day is not None:
                on_day(day, rows_written)
    finally:
        sink.close()

    customer_sink = _TableSink(out, CUSTOMERS, CUSTOMER_SCHEMA)
    customer_sink.write(customers_table(bank))
    customer_sink.close()

    fraud_rows = int(by_scenario.sum() - by_scenario[GENUINE])
    manifest: dict[str, Any] = {
        "generator": "simulator",
        "schema_version": "v1",
        "seed": seed,
        "parameters": {
            "customers": customers,
            "days": days,
            "start": start.isoformat(),
            "scenarios": list(scenarios),
        },
        "start_date": start.isoformat(),
        "end_date": (start + dt.timedelta(days=days - 1)).isoformat(),
        "end_exclusive": (start + dt.timedelta(days=days)).isoformat() + "T00:00:00Z",
        "rows": {
            TRANSACTIONS: rows_written,
            CUSTOMERS: bank.n_customers,
            "cards": bank.n_cards,
            "terminals": bank.n_terminals,
        },
        "fraud_rows": fraud_rows,
        "fraud_rate": round(fraud_rows / max(1, rows_written), 6),
        "fraud_by_scenario": {
            name: int(by_scenario[1 + SCENARIO_NAMES.index(name)]) for name in scenarios
        },
        "files": {name: sha256_file(out / name) for name in FILES},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
