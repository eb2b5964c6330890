"""Reading history files (transactions with labels) and the customers table.

Parquet or CSV, chosen by suffix. CSV identifiers and merchant category codes are read as
strings so that leading zeros survive; timestamps are parsed to UTC. Nothing is validated or
dropped here: `training.validation` does that and reports what it found.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fraud.errors import ValidationError

STRING_COLUMNS = (
    "transaction_id",
    "card_id",
    "customer_id",
    "terminal_id",
    "merchant_category",
    "channel",
    "currency",
    "device_id",
    "country",
    "fraud_scenario",
    "gender",
    "segment",
)


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ValidationError(f"history file not found: {path}", field="path", rule="exists")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif suffix == ".csv":
        header = pd.read_csv(path, nrows=0).columns
        dtypes = {column: "string" for column in STRING_COLUMNS if column in header}
        frame = pd.read_csv(path, dtype=dtypes, keep_default_na=True)
    else:
        raise ValidationError(
            f"unsupported history file type '{suffix}' ({path}); use .parquet or .csv",
            field="path",
            rule="suffix",
        )
    for column in STRING_COLUMNS:
        if column in frame.columns:
            frame[column] = frame[column].astype("string")
    return frame


def read_history(path: Path) -> pd.DataFrame:
    """The transactions file as read, with `timestamp` as UTC datetimes (unparseable -> NaT)."""
    frame = _read_table(Path(path))
    if "timestamp" in frame.columns:
        frame["timestamp"] = parse_timestamps(frame["timestamp"])
    return frame


def read_customers(path: Path) -> pd.DataFrame:
    return _read_table(Path(path))


def parse_timestamps(values: pd.Series) -> pd.Series:
    """UTC datetimes at microsecond resolution; values that do not parse become NaT."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        parsed = values.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(values.dtype):
        parsed = values.dt.tz_localize("UTC")
    else:
        parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    return parsed.astype("datetime64[us, UTC]")


def customers_path_for(history_path: Path) -> Path | None:
    """The customers table written beside a simulated history, if there is one."""
    history_path = Path(history_path)
    for candidate in (
        history_path.with_name("customers" + history_path.suffix),
        history_path.with_name("customers.parquet"),
        history_path.with_name("customers.csv"),
    ):
        if candidate.is_file():
            return candidate
    return None
