"""The steps of `fraud train` and `fraud backtest`, each returning a JSON-able result.

The CLI (fraud/cli/train.py) shows progress and tables; the steps here do the work and say what
they did. Every step's result is also written to `<results_dir>/<step>.json`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraud.errors import ValidationError
from training.data import (
    DAY,
    FeatureSpec,
    TimeSplit,
    ValidatedHistory,
    backtest_split,
    customers_path_for,
    default_split,
    feature_spec,
    labelled_features,
    read_customers,
    read_history,
    validate_customers,
    validate_history,
)
from training.evaluation import FairnessGate, attach_groups
from training.model import PolicyTargets, TrainConfig, TrainingOutcome, train_on_split
from training.results import write_json

DEFAULT_SEED = 1


@dataclass
class StepLog:
    """Results of the steps run so far, each also written as JSON."""

    folder: Path
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def record(self, step: str, result: dict[str, Any], seconds: float) -> dict[str, Any]:
        result = {"step": step, "seconds": round(seconds, 2), **result}
        self.results[step] = result
        write_json(self.folder / f"{step}.json", result)
        return result


def load_and_validate(
    history_path: Path, max_rejected_share: float, results_dir: Path | None = None
) -> ValidatedHistory:
    validated = validate_history(
        read_history(history_path), source=str(history_path), max_rejected_share=max_rejected_share
    )
    if results_dir is not None and len(validated.rejected):
        # Rejected rows are kept for inspection, never just dropped.
        results_dir.mkdir(parents=True, exist_ok=True)
        validated.rejected.to_csv(results_dir / "rejected_rows.csv", index=False)
    return validated


def load_groups(
    customers_path: Path | None, labelled: pd.DataFrame, at: pd.Timestamp
) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    """Fairness attributes per transaction (age band at `at`, gender), or None without a table."""
    if customers_path is None:
        return None, {"customers": None}
    customers, problems = validate_customers(read_customers(customers_path), str(customers_path))
    groups = attach_groups(labelled, customers, at)
    return groups, {
        "customers": str(customers_path),
        "customers_rows": len(customers),
        "customers_problems": [p.describe() for p in problems],
        "transactions_without_customer": int((groups["gender"] == "unknown").sum()),
    }


def build_features(
    validated: ValidatedHistory, label_delay: timedelta, spec: FeatureSpec | None = None
) -> tuple[pd.DataFrame, FeatureSpec]:
    spec = spec or feature_spec()
    return labelled_features(validated.frame, label_delay, spec), spec


def training_result(outcome: TrainingOutcome) -> dict[str, Any]:
    summary = outcome.summary()
    summary.pop("importance", None)
    summary["top_features"] = list(outcome.importance.index[:10])
    return summary


def train(
    labelled: pd.DataFrame,
    spec: FeatureSpec,
    label_delay: timedelta,
    groups: pd.DataFrame | None,
    seed: int = DEFAULT_SEED,
    targets: PolicyTargets | None = None,
    fairness_gate: FairnessGate | None = None,
    split: TimeSplit | None = None,
    with_baseline: bool = True,
    threads: int = 1,
    search_trials: int = 1,
    genuine_share: float = 1.0,
    previous_design: bool = False,
    jobs: int = 1,
    test_needs_fraud: bool = True,
) -> TrainingOutcome:
    split = split or default_split(labelled["timestamp"], label_delay)
    config = TrainConfig(
        seed=seed,
        targets=targets or PolicyTargets(),
        fairness_gate=fairness_gate or FairnessGate(),
        with_baseline=with_baseline,
        threads=threads,
        search_trials=search_trials,
        genuine_share=genuine_share,
        previous_design=previous_design,
        jobs=jobs,
        test_needs_fraud=test_needs_fraud,
    )
    return train_on_split(labelled, split, spec, config, groups)


def parse_day(text: str, option: str) -> pd.Timestamp:
    """A YYYY-MM-DD option as the UTC midnight starting that day."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(
            f"{option}: expected a date YYYY-MM-DD, got {text!r}", field=option, rule="date"
        ) from None
    return pd.Timestamp(day.isoformat(), tz="UTC")


def backtest_window_split(
    train_from: str,
    train_to: str,
    test_from: str,
    test_to: str,
    label_delay: timedelta,
    folds: int = 3,
) -> TimeSplit:
    """Inclusive day options -> half-open windows; the test must start a label delay after
    training ends. With `folds`, the model learns from the whole training window (refit)."""
    start, train_end = (
        parse_day(train_from, "--train-from"),
        parse_day(train_to, "--train-to") + DAY,
    )
    test_start, test_end = (
        parse_day(test_from, "--test-from"),
        parse_day(test_to, "--test-to") + DAY,
    )
    for (first, first_text), (last, last_text) in (
        (("--train-from", train_from), ("--train-to", train_to)),
        (("--test-from", test_from), ("--test-to", test_to)),
    ):
        if parse_day(last_text, last) < parse_day(first_text, first):
            raise ValidationError(
                f"{last} {last_text} is before {first} {first_text}: the window is reversed; "
                "give its first day, then its last",
                field=last.removeprefix("--").replace("-", "_"),
                rule="order",
            )
    if test_start - train_end < pd.Timedelta(label_delay):
        raise ValidationError(
            f"--test-from {test_from} is less than the label delay ({label_delay.days} days) "
            f"after the end of --train-to {train_to}: labels of the last training days would "
            "not have arrived when the test period starts; the earliest test day is "
            f"{(train_end + pd.Timedelta(label_delay)).date().isoformat()}",
            field="test_from",
            rule="gap",
        )
    return backtest_split(start, train_end, test_start, test_end, label_delay, folds=folds)


def backtest_scores(outcome: TrainingOutcome) -> pd.DataFrame:
    test = outcome.windows["test"]
    return pd.DataFrame(
        {
            "transaction_id": test["transaction_id"].astype("string"),
            "score": np.round(outcome.default.scores["test"], 8),
        }
    )


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = function()
    return value, time.perf_counter() - started


__all__ = [
    "StepLog",
    "backtest_scores",
    "backtest_window_split",
    "build_features",
    "customers_path_for",
    "load_and_validate",
    "load_groups",
    "parse_day",
    "timed",
    "train",
    "training_result",
]
