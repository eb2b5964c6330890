"""Data validation of history files (pandera): schema, ranges, duplicates, time order, labels.

`validate_history` never drops a row silently: every rejected row is counted under the check
it failed, the clean frame is returned beside a `ValidationReport`, and the caller decides
whether the report passes (the promotion gate reads `report.passed`). Only a file missing a
required column cannot be validated at all; that raises `fraud.errors.ValidationError`.

Only the fields a backtest needs are required; coordinates, device, country, category, channel
and currency are optional and checked only when present.

A row may have no label yet (`is_fraud` empty: the verdict is still pending, as for a bank's
last days). It is kept, marked `is_labelled` False with `is_fraud` 0 (no confirmed fraud, what
the features' label-derived aggregates know of it too), and the report counts it; training never
learns from it and evaluation leaves it out, but it is replayed and scored like any other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import pandas as pd
import pandera.pandas as pa

from fraud.errors import ValidationError
from schemas import history_columns
from training.data.history import parse_timestamps

REQUIRED_COLUMNS, OPTIONAL_COLUMNS = history_columns()
NUMERIC_COLUMNS = (
    "amount",
    "is_fraud",
    "terminal_lat",
    "terminal_lon",
    "customer_lat",
    "customer_lon",
)
MAX_AMOUNT = 1_000_000.0
# A handful of unusable rows should not block a bank-sized history; more than this share does.
DEFAULT_MAX_REJECTED_SHARE = 0.001

Severity = Literal["error", "warning"]


@dataclass
class Problem:
    check: str
    column: str | None
    rows: int
    severity: Severity
    examples: list[str] = field(default_factory=list)

    def describe(self) -> str:
        where = f"{self.column}: " if self.column else ""
        sample = f" (e.g. {', '.join(self.examples)})" if self.examples else ""
        return f"[{self.severity}] {where}{self.check}: {self.rows} rows{sample}"


@dataclass
class ValidationReport:
    source: str
    rows_read: int
    rows_rejected: int
    rows_kept: int
    rows_out_of_order: int
    missing_optional_columns: list[str]
    problems: list[Problem]
    max_rejected_share: float
    passed: bool
    rows_unlabelled: int = 0  # kept rows without a label yet

    @property
    def rejected_share(self) -> float:
        return self.rows_rejected / self.rows_read if self.rows_read else 0.0

    def to_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["rejected_share"] = self.rejected_share
        return result

    def summary_lines(self) -> list[str]:
        lines = [
            f"{self.source}: {self.rows_read} rows read, {self.rows_kept} kept, "
            f"{self.rows_rejected} rejected ({self.rejected_share:.4%}; limit "
            f"{self.max_rejected_share:.4%}), {self.rows_out_of_order} out of time order (sorted)"
            + (
                f", {self.rows_unlabelled} without a label yet (scored, never trained on or "
                "evaluated)"
                if self.rows_unlabelled
                else ""
            )
        ]
        lines.extend(problem.describe() for problem in self.problems)
        if self.missing_optional_columns:
            lines.append("optional columns absent: " + ", ".join(self.missing_optional_columns))
        return lines


def _string(pattern: str | None = None, required: bool = True, nullable: bool = False) -> pa.Column:
    checks = [pa.Check.str_length(min_value=1)]
    if pattern:
        checks.append(pa.Check.str_matches(pattern))
    return pa.Column("string", checks=checks, nullable=nullable, required=required)


def _range(low: float, high: float) -> pa.Column:
    return pa.Column(
        float, pa.Check.in_range(low, high), nullable=True, required=False, coerce=False
    )


HISTORY_CHECKS = pa.DataFrameSchema(
    {
        "transaction_id": _string(),
        "timestamp": pa.Column("datetime64[us, UTC]", nullable=False),
        "card_id": _string(r"^[A-Za-z0-9_:.-]+$"),
        "customer_id": _string(),
        "terminal_id": _string(),
        "amount": pa.Column(
            float,
            [pa.Check.gt(0), pa.Check.le(MAX_AMOUNT)],
            nullable=False,
        ),
        "is_fraud": pa.Column(float, pa.Check.isin([0.0, 1.0]), nullable=True),
        "currency": _string(r"^[A-Z]{3}$", required=False, nullable=True),
        "merchant_category": _string(r"^[0-9]{4}$", required=False, nullable=True),
        "channel": pa.Column(
            "string", pa.Check.isin(["pos", "ecom", "atm"]), nullable=True, required=False
        ),
        "terminal_lat": _range(-90, 90),
        "terminal_lon": _range(-180, 180),
        "customer_lat": _range(-90, 90),
        "customer_lon": _range(-180, 180),
        "device_id": _string(required=False, nullable=True),
        "country": _string(r"^[A-Z]{2}$", required=False, nullable=True),
        "fraud_scenario": pa.Column("string", nullable=True, required=False),
    },
    strict=False,
    name="history",
)

CUSTOMERS_SCHEMA = pa.DataFrameSchema(
    {
        "customer_id": _string(),
        "birth_year": pa.Column(float, pa.Check.in_range(1900, 2100), nullable=False),
        "gender": pa.Column("string", pa.Check.isin(["F", "M"]), nullable=True),
    },
    strict=False,
    name="customers",
)


def _coerce(frame: pd.DataFrame, problems: list[Problem]) -> pd.DataFrame:
    """Numbers as float and timestamps as UTC; values that do not convert are problems."""
    frame = frame.copy()
    for column in NUMERIC_COLUMNS:
        if column not in frame.columns:
            continue
        original = frame[column]
        converted = pd.to_numeric(original, errors="coerce").astype(float)
        broken = converted.isna() & original.notna()
        if broken.any():
            examples = [str(v) for v in original[broken].head(3)]
            problems.append(Problem("not a number", column, int(broken.sum()), "error", examples))
        frame[column] = converted
    if "timestamp" in frame.columns:
        original = frame["timestamp"]
        parsed = parse_timestamps(original)
        broken = parsed.isna() & original.notna()
        if broken.any():
            examples = [str(v) for v in original[broken].head(3)]
            problems.append(
                Problem("not an ISO 8601 time", "timestamp", int(broken.sum()), "error", examples)
            )
        frame["timestamp"] = parsed
    for column in frame.columns:
        if column in REQUIRED_COLUMNS or column in OPTIONAL_COLUMNS:
            if frame[column].dtype == object:
                frame[column] = frame[column].astype("string")
    return frame


def _schema_problems(
    frame: pd.DataFrame, schema: pa.DataFrameSchema
) -> tuple[list[Problem], pd.Index]:
    """Problems pandera finds, grouped by column and check, and the index of the bad rows."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
    else:
        return [], pd.Index([])
    problems = []
    bad_rows: set[Any] = set()
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=True):
        rows = group["index"].dropna()
        bad_rows.update(rows.tolist())
        examples = [str(v) for v in group["failure_case"].drop_duplicates().head(3)]
        count = int(rows.nunique()) if len(rows) else len(group)
        name = str(check)
        if name == "not_nullable":
            name = "missing value"
        problems.append(
            Problem(name, None if pd.isna(column) else str(column), count, "error", examples)
        )
    return problems, pd.Index(sorted(bad_rows))


@dataclass
class ValidatedHistory:
    frame: pd.DataFrame  # usable rows, sorted by (timestamp, transaction_id)
    rejected: pd.DataFrame  # the rows left out, as read (for a quarantine file)
    report: ValidationReport


def validate_history(
    history: pd.DataFrame,
    source: str = "history",
    max_rejected_share: float = DEFAULT_MAX_REJECTED_SHARE,
) -> ValidatedHistory:
    """The usable rows, the rejected ones, and what was wrong with them."""
    missing = [column for column in REQUIRED_COLUMNS if column not in history.columns]
    if missing:
        raise ValidationError(
            f"{source}: required column(s) missing: {', '.join(missing)} "
            f"(required: {', '.join(REQUIRED_COLUMNS)})",
            field=missing[0],
            rule="required",
        )
    problems: list[Problem] = []
    history = history.reset_index(drop=True)
    frame = _coerce(history, problems)
    schema_problems, bad_index = _schema_problems(frame, HISTORY_CHECKS)
    problems.extend(schema_problems)
    rejected = frame.index.isin(bad_index)

    # The first occurrence of a transaction id stands; later ones are rejected and counted.
    duplicated = (
        frame["transaction_id"].duplicated(keep="first")
        & frame["transaction_id"].notna().to_numpy()
    )
    if duplicated.any():
        identical = int(frame.duplicated(keep="first").sum())
        examples = [str(v) for v in frame.loc[duplicated, "transaction_id"].head(3)]
        problems.append(
            Problem(
                f"duplicate transaction_id ({identical} exact copies)",
                "transaction_id",
                int(duplicated.sum()),
                "error",
                examples,
            )
        )
        rejected |= duplicated.to_numpy()

    clean = frame.loc[~rejected]
    timestamps = clean["timestamp"]
    out_of_order = int((timestamps < timestamps.cummax().shift(1)).sum())
    if out_of_order:
        problems.append(
            Problem("out of time order (sorted before use)", "timestamp", out_of_order, "warning")
        )
    clean = clean.sort_values(["timestamp", "transaction_id"], kind="stable").reset_index(drop=True)
    clean["is_labelled"] = clean["is_fraud"].notna().to_numpy()
    clean["is_fraud"] = clean["is_fraud"].fillna(0.0).astype("int8")
    labelled = clean.loc[clean["is_labelled"], "is_fraud"]

    dataset_error = False
    if len(labelled) == 0 or labelled.nunique() < 2:
        labels = sorted(labelled.unique().tolist())
        problems.append(
            Problem(f"labels must include both 0 and 1, found {labels}", "is_fraud", 0, "error")
        )
        dataset_error = True

    rows_rejected = int(rejected.sum())
    share = rows_rejected / len(frame) if len(frame) else 0.0
    report = ValidationReport(
        source=source,
        rows_read=len(frame),
        rows_rejected=rows_rejected,
        rows_kept=len(clean),
        rows_out_of_order=out_of_order,
        missing_optional_columns=[c for c in OPTIONAL_COLUMNS if c not in frame.columns],
        problems=problems,
        max_rejected_share=max_rejected_share,
        passed=not dataset_error and share <= max_rejected_share,
        rows_unlabelled=int((~clean["is_labelled"]).sum()),
    )
    return ValidatedHistory(clean, history.loc[rejected], report)


def validate_customers(
    customers: pd.DataFrame, source: str = "customers"
) -> tuple[pd.DataFrame, list[Problem]]:
    """Customers usable for fairness groups; problems are reported, never silently skipped."""
    missing = [c for c in ("customer_id", "birth_year", "gender") if c not in customers.columns]
    if missing:
        raise ValidationError(
            f"{source}: required column(s) missing: {', '.join(missing)}",
            field=missing[0],
            rule="required",
        )
    frame = customers.reset_index(drop=True).copy()
    frame["birth_year"] = pd.to_numeric(frame["birth_year"], errors="coerce").astype(float)
    for column in ("customer_id", "gender"):
        frame[column] = frame[column].astype("string")
    problems, bad_index = _schema_problems(frame, CUSTOMERS_SCHEMA)
    rejected = frame.index.isin(bad_index)
    duplicated = frame["customer_id"].duplicated(keep="first").to_numpy()
    if duplicated.any():
        problems.append(
            Problem("duplicate customer_id", "customer_id", int(duplicated.sum()), "error")
        )
        rejected |= duplicated
    return frame.loc[~rejected].reset_index(drop=True), problems
