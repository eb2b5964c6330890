"""Reading history files (transactions with labels) and the customers table.

Parquet or CSV, chosen by suffix. CSV identifiers and merchant category codes are read as
strings so that leading zeros survive; timestamps are parsed to UTC. Nothing is validated or
dropped here: `training.data.validation` does that and reports what it found.
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


def check_readable(path: Path) -> None:
    """Cheaply, before any work: `path` is a Parquet or CSV file whose header can be read.
    Otherwise ValidationError naming the file and what is wrong with it."""
    _read_table(Path(path), header_only=True)


def _read_table(path: Path, header_only: bool = False) -> pd.DataFrame:
    if not path.is_file():
        what = "is not a file" if path.exists() else "not found"
        raise ValidationError(f"history file {what}: {path}", field="path", rule="exists")
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ValidationError(
            f"unsupported history file type '{suffix}' ({path}); use .parquet or .csv",
            field="path",
            rule="suffix",
        )
    try:
        if suffix == ".parquet":
            if header_only:
                import pyarrow.parquet as pq

                return pq.read_schema(path).empty_table().to_pandas()
            frame = pd.read_parquet(path)
        else:
            header = pd.read_csv(path, nrows=0).columns
            if header_only:
                return pd.DataFrame(columns=header)
            dtypes = {column: "string" for column in STRING_COLUMNS if column in header}
            frame = pd.read_csv(path, dtype=dtypes, keep_default_na=True)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        # pyarrow's ArrowInvalid is a ValueError; an empty or binary CSV fails to parse.
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValidationError(
            f"{path} is not a readable {suffix[1:]} file ({first_line}); check that it is a "
            "history written by `fraud simulate` or in its format",
            field="path",
            rule="readable",
        ) from None
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
