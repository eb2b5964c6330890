"""Time-based split: learn from the past, choose thresholds out of time, test later still.

Every window is half-open, [start, end). Transactions are never split at random; the split is
recorded with the model version (`TimeSplit.as_dict`). Two designs:

- Refit (the default, `folds` given): the model learns from every labelled day, the training
  window [train_from, train_to) ending one label delay before the test. Hyper-parameters and
  thresholds are chosen out of time on rolling-origin folds inside that window: fold i fits on
  [train_from, d_i) and is scored on the `fold_days` that start one label delay after d_i, the
  folds' validation days following one another up to train_to. The validation window is their
  union: every row there was scored by a model that never saw it (nor anything within a label
  delay before it). The final model is then refit on the whole training window.
- Holdout (`folds` empty, as before): fit on [train_from, train_to), choose thresholds on a
  validation window one label delay later, and test one label delay after that; the model
  never learns from the validation days nor from the gaps.

Either way the test starts at least one label delay after the last labelled day the model
learned from: a model put in service at the start of the test period could only have seen
labels that had arrived by then.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, NoReturn

import numpy as np
import numpy.typing as npt
import pandas as pd

from fraud.errors import ValidationError

Window = Literal["train", "validation", "test"]
WINDOWS: tuple[Window, ...] = ("train", "validation", "test")
DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class Fold:
    """One rolling-origin fold: fit on [train_from, train_to), score [validation_from,
    validation_to), which starts at least one label delay after train_to."""

    train_from: pd.Timestamp
    train_to: pd.Timestamp
    validation_from: pd.Timestamp
    validation_to: pd.Timestamp

    def train_mask(self, timestamps: pd.Series) -> npt.NDArray[np.bool_]:
        return ((timestamps >= self.train_from) & (timestamps < self.train_to)).to_numpy()

    def validation_mask(self, timestamps: pd.Series) -> npt.NDArray[np.bool_]:
        return ((timestamps >= self.validation_from) & (timestamps < self.validation_to)).to_numpy()

    def recent_mask(self, timestamps: pd.Series) -> npt.NDArray[np.bool_]:
        """The label-delay days between its training and validation days: traffic its model
        never learned from, whose labels were not known yet when it was fitted."""
        return ((timestamps >= self.train_to) & (timestamps < self.validation_from)).to_numpy()

    def as_dict(self) -> dict[str, str]:
        return {
            "train_from": self.train_from.isoformat(),
            "train_to": self.train_to.isoformat(),
            "validation_from": self.validation_from.isoformat(),
            "validation_to": self.validation_to.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Fold:
        return cls(**{key: pd.Timestamp(value) for key, value in data.items()})


@dataclass(frozen=True)
class TimeSplit:
    train_from: pd.Timestamp
    train_to: pd.Timestamp
    validation_from: pd.Timestamp
    validation_to: pd.Timestamp
    test_from: pd.Timestamp
    test_to: pd.Timestamp
    label_delay: timedelta
    folds: tuple[Fold, ...] = ()

    @property
    def refit(self) -> bool:
        """Whether the final model is refit on the whole training window (see the module doc)."""
        return bool(self.folds)

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
        if self.refit:
            self._check_folds(delay)
            return
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

    def _check_folds(self, delay: pd.Timedelta) -> None:
        if self.test_from - self.train_to < delay:
            raise ValidationError(
                f"test window starts {self.test_from} but training ends {self.train_to}: the "
                f"gap must be at least the label delay ({delay}) so that no label from the "
                "future is used",
                field="test_from",
                rule="gap",
            )
        for number, fold in enumerate(self.folds, start=1):
            if fold.validation_from - fold.train_to < delay:
                raise ValidationError(
                    f"fold {number} validates from {fold.validation_from} but fits until "
                    f"{fold.train_to}: the gap must be at least the label delay ({delay})",
                    field="folds",
                    rule="gap",
                )
            inside = (
                self.train_from <= fold.train_from < fold.train_to
                and fold.validation_from < fold.validation_to <= self.train_to
            )
            if not inside:
                raise ValidationError(
                    f"fold {number} ({fold.as_dict()}) is not inside the training window "
                    f"[{self.train_from}, {self.train_to})",
                    field="folds",
                    rule="order",
                )
        covered = (self.folds[0].validation_from, self.folds[-1].validation_to)
        if covered != (self.validation_from, self.validation_to):
            raise ValidationError(
                f"the validation window [{self.validation_from}, {self.validation_to}) is not "
                f"the span of the folds' validation days [{covered[0]}, {covered[1]})",
                field="folds",
                rule="span",
            )

    def window(self, name: Window) -> tuple[pd.Timestamp, pd.Timestamp]:
        if name == "train":
            return self.train_from, self.train_to
        if name == "validation":
            return self.validation_from, self.validation_to
        return self.test_from, self.test_to

    def recent_mask(self, timestamps: pd.Series) -> npt.NDArray[np.bool_]:
        """The days between the last labelled day and the test (refit design): traffic the
        final model never learned from, known when it goes into service, labels still pending."""
        return ((timestamps >= self.train_to) & (timestamps < self.test_from)).to_numpy()

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
        if self.refit:
            # Each fold's model against its validation days; the final model against the test.
            gaps = [fold.validation_from - fold.train_to for fold in self.folds]
            result["gap_train_validation_days"] = min(gaps) / DAY
            result["gap_validation_test_days"] = (self.test_from - self.train_to) / DAY
        else:
            result["gap_train_validation_days"] = (self.validation_from - self.train_to) / DAY
            result["gap_validation_test_days"] = (self.test_from - self.validation_to) / DAY
        result["refit"] = self.refit
        result["folds"] = json.dumps([fold.as_dict() for fold in self.folds])
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
        folds = json.loads(data.get("folds") or "[]")
        return cls(
            **stamps,
            label_delay=timedelta(days=float(data["label_delay_days"])),
            folds=tuple(Fold.from_dict(fold) for fold in folds),
        )


def rolling_folds(
    train_from: pd.Timestamp,
    train_to: pd.Timestamp,
    label_delay: timedelta,
    validation_days: int,
    folds: int,
) -> tuple[Fold, ...]:
    """`folds` rolling-origin folds whose validation days (whole days, `validation_days` //
    `folds` each) follow one another up to `train_to`; each fits on everything from
    `train_from` up to one label delay before its validation days."""
    if folds < 1:
        raise ValidationError(f"need at least one fold, got {folds}", field="folds")
    fold_days = validation_days // folds
    if fold_days < 1:
        raise ValidationError(
            f"{validation_days} validation day(s) cannot be shared by {folds} folds; give at "
            "least one day per fold",
            field="validation_days",
            rule="span",
        )
    delay = pd.Timedelta(label_delay)
    first_validation = train_to - folds * fold_days * DAY
    if first_validation - delay - train_from < DAY:
        span = (train_to - train_from) / DAY
        raise ValidationError(
            f"a training window of {span:.0f} days is too short for {folds} fold(s) of "
            f"{fold_days} validation day(s) after a {delay / DAY:.0f}-day label delay (the first "
            "fold would learn from less than a day); use fewer folds or validation days",
            field="train_from",
            rule="span",
        )
    result = []
    for number in range(folds):
        validation_from = first_validation + number * fold_days * DAY
        result.append(
            Fold(
                train_from,
                validation_from - delay,
                validation_from,
                validation_from + fold_days * DAY,
            )
        )
    return tuple(result)


def refit_split(
    train_from: pd.Timestamp,
    train_to: pd.Timestamp,
    test_from: pd.Timestamp,
    test_to: pd.Timestamp,
    label_delay: timedelta,
    validation_days: int,
    folds: int,
) -> TimeSplit:
    """The refit design on [train_from, train_to): `folds` rolling folds sharing its last
    `validation_days`, the validation window their span."""
    plan = rolling_folds(train_from, train_to, label_delay, validation_days, folds)
    return TimeSplit(
        train_from,
        train_to,
        plan[0].validation_from,
        plan[-1].validation_to,
        test_from,
        test_to,
        label_delay,
        plan,
    )


def default_split(
    timestamps: pd.Series,
    label_delay: timedelta,
    test_days: int = 10,
    validation_days: int = 15,
    warmup_days: int = 7,
    folds: int = 3,
) -> TimeSplit:
    """Whole UTC days counted back from the end of the history.

    test = the last `test_days`; training starts after `warmup_days` (during which the per-card
    aggregates are still filling up: replayed, not trained on). With `folds` (the refit
    design) training ends one label delay before the test and its last `validation_days` are
    the folds' validation days; with `folds=0` (holdout) validation is the `validation_days`
    ending one label delay before the test, and training ends one label delay before that.
    """
    if len(timestamps) == 0:
        raise ValidationError("cannot split an empty history", field="timestamp", rule="empty")
    first = timestamps.min().floor("D")
    end = timestamps.max().floor("D") + DAY
    delay = pd.Timedelta(label_delay)
    test_from = end - test_days * DAY
    train_from = first + warmup_days * DAY
    if folds:
        train_to = test_from - delay
        if train_to - train_from < DAY:
            _too_short(first, end, warmup_days, delay, validation_days, test_days)
        try:
            return refit_split(
                train_from, train_to, test_from, end, label_delay, validation_days, folds
            )
        except ValidationError:
            _too_short(first, end, warmup_days, delay, validation_days, test_days)
    validation_to = test_from - delay
    validation_from = validation_to - validation_days * DAY
    train_to = validation_from - delay
    if train_to - train_from < DAY:
        _too_short(first, end, warmup_days, delay, validation_days, test_days)
    return TimeSplit(
        train_from, train_to, validation_from, validation_to, test_from, end, label_delay
    )


def _too_short(
    first: pd.Timestamp,
    end: pd.Timestamp,
    warmup_days: int,
    delay: pd.Timedelta,
    validation_days: int,
    test_days: int,
) -> NoReturn:
    span = (end - first) / DAY
    raise ValidationError(
        f"history spans {span:.0f} days: too short for {warmup_days} warm-up + training + "
        f"{delay / DAY:.0f} gap + {validation_days} validation + {delay / DAY:.0f} gap + "
        f"{test_days} test days; use a longer history or smaller windows",
        field="timestamp",
        rule="span",
    )


def holdout_within(split: TimeSplit, validation_days: int = 8) -> TimeSplit:
    """The holdout design inside `split`'s training window, with the same test: validation is
    the window's last `validation_days`, training ends one label delay before them (the
    default split before the refit design)."""
    validation_from = split.train_to - validation_days * DAY
    return TimeSplit(
        split.train_from,
        validation_from - pd.Timedelta(split.label_delay),
        validation_from,
        split.train_to,
        split.test_from,
        split.test_to,
        split.label_delay,
    )


def backtest_split(
    train_from: pd.Timestamp,
    train_to: pd.Timestamp,
    test_from: pd.Timestamp,
    test_to: pd.Timestamp,
    label_delay: timedelta,
    validation_share: float = 0.25,
    folds: int = 3,
) -> TimeSplit:
    """A split inside the user's training window. With `folds` (refit) the model learns from the
    whole window, and the folds' validation days are its last `validation_share`; with
    `folds=0` (holdout) the model learns on its first part and the thresholds are chosen on its
    last `validation_share`, one label delay later."""
    delay = pd.Timedelta(label_delay)
    span_days = (train_to - train_from) / DAY
    validation_days = max(1, round(span_days * validation_share))
    if folds:
        validation_days = max(validation_days, folds)
        return refit_split(
            train_from, train_to, test_from, test_to, label_delay, validation_days, folds
        )
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
