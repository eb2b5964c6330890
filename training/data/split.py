"""Time-based split: train on the past, choose thresholds later, test later still.

Every window is half-open, [start, end). Between train and validation, and between validation
and test, there is a gap of at least the label delay: a model trained at the start of the test
period could only have seen labels that had arrived by then. Transactions are never split at
random; the split is recorded with the model version (`TimeSplit.as_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from fraud.errors import ValidationError

Window = Literal["train", "validation", "test"]
WINDOWS: tuple[Window, ...] = ("train", "validation", "test")
DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class TimeSplit:
    train_from: pd.Timestamp
    train_to: pd.Timestamp
    validation_from: pd.Timestamp
    validation_to: pd.Timestamp
    test_from: pd.Timestamp
    test_to: pd.Timestamp
    label_delay: timedelta

    def __post_init__(self) -> None:
        bounds = {
            "train": (self.train_from, self.train_to),
            "validation": (self.validation_from, self.validation_to),
            "test": (self.test_from, self.test_to),
        }
        for name, (start, end) in bounds.items():
            if not start < end:
                raise ValidationError(
                    f"{name} window is empty: from {start} to {end}", field=name, rule="order"
                )
        delay = pd.Timedelta(self.label_delay)
        for earlier, later, start, end in (
            ("train", "validation", self.train_to, self.validation_from),
            ("validation", "test", self.validation_to, self.test_from),
        ):
            if end - start < delay:
                raise ValidationError(
                    f"{later} window starts {end} but {earlier} ends {start}: the gap must be at "
                    f"least the label delay ({delay}) so that no label from the future is used",
                    field=f"{later}_from",
                    rule="gap",
                )

    def window(self, name: Window) -> tuple[pd.Timestamp, pd.Timestamp]:
        if name == "train":
            return self.train_from, self.train_to
        if name == "validation":
            return self.validation_from, self.validation_to
        return self.test_from, self.test_to

    def mask(self, timestamps: pd.Series, name: Window) -> npt.NDArray[np.bool_]:
        start, end = self.window(name)
        return ((timestamps >= start) & (timestamps < end)).to_numpy()

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name in WINDOWS:
            start, end = self.window(name)
            result[f"{name}_from"] = start.isoformat()
            result[f"{name}_to"] = end.isoformat()
        result["label_delay_days"] = pd.Timedelta(self.label_delay) / DAY
        result["gap_train_validation_days"] = (self.validation_from - self.train_to) / DAY
        result["gap_validation_test_days"] = (self.test_from - self.validation_to) / DAY
        return result

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimeSplit:
        stamps = {
            key: pd.Timestamp(data[key])
            for key in (
                "train_from",
                "train_to",
                "validation_from",
                "validation_to",
                "test_from",
                "test_to",
            )
        }
        return cls(**stamps, label_delay=timedelta(days=float(data["label_delay_days"])))


def default_split(
    timestamps: pd.Series,
    label_delay: timedelta,
    test_days: int = 10,
    validation_days: int = 8,
    warmup_days: int = 7,
) -> TimeSplit:
    """Whole UTC days counted back from the end of the history.

    test = the last `test_days`; validation ends one label delay before the test; training
    ends one label delay before validation and starts after `warmup_days`, during which the
    per-card aggregates are still filling up (they are replayed, but not trained on).
    """
    if len(timestamps) == 0:
        raise ValidationError("cannot split an empty history", field="timestamp", rule="empty")
    first = timestamps.min().floor("D")
    end = timestamps.max().floor("D") + DAY
    delay = pd.Timedelta(label_delay)
    test_from = end - test_days * DAY
    validation_to = test_from - delay
    validation_from = validation_to - validation_days * DAY
    train_to = validation_from - delay
    train_from = first + warmup_days * DAY
    if train_to - train_from < DAY:
        span = (end - first) / DAY
        raise ValidationError(
            f"history spans {span:.0f} days: too short for {warmup_days} warm-up + training + "
            f"{delay / DAY:.0f} gap + {validation_days} validation + {delay / DAY:.0f} gap + "
            f"{test_days} test days; use a longer history or smaller windows",
            field="timestamp",
            rule="span",
        )
    return TimeSplit(
        train_from, train_to, validation_from, validation_to, test_from, end, label_delay
    )


def backtest_split(
    train_from: pd.Timestamp,
    train_to: pd.Timestamp,
    test_from: pd.Timestamp,
    test_to: pd.Timestamp,
    label_delay: timedelta,
    validation_share: float = 0.25,
) -> TimeSplit:
    """A split inside the user's training window: the model learns on its first part and the
    thresholds are chosen on its last `validation_share`, one label delay later."""
    delay = pd.Timedelta(label_delay)
    span_days = (train_to - train_from) / DAY
    validation_days = max(1, round(span_days * validation_share))
    validation_from = train_to - validation_days * DAY
    fit_to = validation_from - delay
    if fit_to - train_from < DAY:
        raise ValidationError(
            f"training window of {span_days:.0f} days is too short to keep {validation_days} "
            f"validation day(s) after a {delay / DAY:.0f}-day label delay; widen it",
            field="train_from",
            rule="span",
        )
    return TimeSplit(train_from, fit_to, validation_from, train_to, test_from, test_to, label_delay)
