from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from fraud.errors import ValidationError
from training.data import Fold, TimeSplit, backtest_split, default_split, rolling_folds
from training.workflow import backtest_window_split

DAY = pd.Timedelta(days=1)


def stamps(days: int) -> pd.Series:
    return pd.Series(pd.date_range("2026-01-01", periods=days * 24, freq="h", tz="UTC"))


def test_default_split_refits_on_every_labelled_day_with_rolling_folds():
    times = stamps(60)
    split = default_split(times, timedelta(days=7))
    assert split.refit
    assert split.train_from == pd.Timestamp("2026-01-08", tz="UTC")
    assert split.train_to == pd.Timestamp("2026-02-13", tz="UTC")  # a label delay before the test
    assert split.test_from == pd.Timestamp("2026-02-20", tz="UTC")
    assert [(f.train_to.day, f.validation_from.day, f.validation_to.day) for f in split.folds] == [
        (22, 29, 3),
        (27, 3, 8),
        (1, 8, 13),
    ]
    assert all(fold.train_from == split.train_from for fold in split.folds)
    assert (split.validation_from, split.validation_to) == (
        split.folds[0].validation_from,
        split.train_to,
    )
    recorded = split.as_dict()
    assert recorded["gap_train_validation_days"] == 7.0
    assert recorded["gap_validation_test_days"] == 7.0
    assert TimeSplit.from_dict({k: str(v) for k, v in recorded.items()}) == split


def test_rolling_folds_share_the_validation_days_and_refuse_a_short_window():
    t = pd.Timestamp("2026-01-01", tz="UTC")
    folds = rolling_folds(t, t + 30 * DAY, timedelta(days=3), validation_days=10, folds=2)
    assert folds == (
        Fold(t, t + 17 * DAY, t + 20 * DAY, t + 25 * DAY),
        Fold(t, t + 22 * DAY, t + 25 * DAY, t + 30 * DAY),
    )
    with pytest.raises(ValidationError, match="too short"):
        rolling_folds(t, t + 12 * DAY, timedelta(days=3), validation_days=9, folds=3)
    with pytest.raises(ValidationError, match="one day per fold"):
        rolling_folds(t, t + 30 * DAY, timedelta(days=3), validation_days=2, folds=3)


def test_folds_must_wait_for_labels_and_stay_inside_the_training_window():
    t = pd.Timestamp("2026-01-01", tz="UTC")
    delay = timedelta(days=7)

    def split(*folds: Fold) -> TimeSplit:
        return TimeSplit(
            t, t + 30 * DAY, folds[0].validation_from, t + 30 * DAY, t + 37 * DAY, t + 40 * DAY,
            delay, folds,
        )  # fmt: skip

    assert split(Fold(t, t + 13 * DAY, t + 20 * DAY, t + 30 * DAY)).refit
    with pytest.raises(ValidationError, match=r"fold 1 .* label delay"):
        split(Fold(t, t + 14 * DAY, t + 20 * DAY, t + 30 * DAY))
    with pytest.raises(ValidationError, match="not inside the training window"):
        split(Fold(t - DAY, t + 13 * DAY, t + 20 * DAY, t + 30 * DAY))
    with pytest.raises(ValidationError, match="label delay"):
        TimeSplit(
            t, t + 30 * DAY, t + 20 * DAY, t + 30 * DAY, t + 35 * DAY, t + 40 * DAY, delay,
            (Fold(t, t + 13 * DAY, t + 20 * DAY, t + 30 * DAY),),
        )  # fmt: skip


def test_holdout_split_has_the_label_delay_gaps_and_no_overlap():
    times = stamps(60)
    split = default_split(times, timedelta(days=7), validation_days=8, folds=0)
    assert split.train_from == pd.Timestamp("2026-01-08", tz="UTC")  # after 7 warm-up days
    assert split.test_to == pd.Timestamp("2026-03-02", tz="UTC")
    assert split.test_to - split.test_from == 10 * DAY
    assert split.validation_to - split.validation_from == 8 * DAY
    assert split.validation_from - split.train_to == 7 * DAY
    assert split.test_from - split.validation_to == 7 * DAY
    masks = {name: split.mask(times, name) for name in ("train", "validation", "test")}
    assert not (masks["train"] & masks["validation"]).any()
    assert not (masks["validation"] & masks["test"]).any()
    assert times[masks["train"]].max() < split.validation_from - 7 * DAY + pd.Timedelta(hours=1)
    assert times[masks["validation"]].max() + 7 * DAY < split.test_from + pd.Timedelta(hours=1)


def test_split_is_recorded_as_plain_data_and_read_back():
    split = default_split(stamps(60), timedelta(days=7), validation_days=8, folds=0)
    recorded = split.as_dict()
    assert recorded["gap_train_validation_days"] == 7.0
    assert recorded["gap_validation_test_days"] == 7.0
    assert TimeSplit.from_dict(recorded) == split


def test_a_gap_shorter_than_the_label_delay_is_refused():
    t = pd.Timestamp("2026-01-01", tz="UTC")
    with pytest.raises(ValidationError, match="label delay"):
        TimeSplit(
            t,
            t + 10 * DAY,
            t + 12 * DAY,
            t + 20 * DAY,
            t + 27 * DAY,
            t + 30 * DAY,
            timedelta(days=7),
        )
    with pytest.raises(ValidationError, match="label delay"):
        TimeSplit(
            t,
            t + 10 * DAY,
            t + 17 * DAY,
            t + 20 * DAY,
            t + 22 * DAY,
            t + 30 * DAY,
            timedelta(days=7),
        )


def test_too_short_history_is_refused():
    with pytest.raises(ValidationError, match="too short"):
        default_split(stamps(30), timedelta(days=7))


def test_backtest_split_keeps_validation_inside_the_training_window():
    t = pd.Timestamp("2026-01-01", tz="UTC")
    split = backtest_split(t, t + 28 * DAY, t + 35 * DAY, t + 45 * DAY, timedelta(days=7), folds=0)
    assert split.validation_to == t + 28 * DAY
    assert split.validation_from == t + 21 * DAY
    assert split.train_to == t + 14 * DAY


def test_backtest_refit_learns_the_whole_training_window():
    t = pd.Timestamp("2026-01-01", tz="UTC")
    split = backtest_split(t, t + 28 * DAY, t + 35 * DAY, t + 45 * DAY, timedelta(days=7))
    assert (split.train_from, split.train_to) == (t, t + 28 * DAY)
    assert len(split.folds) == 3 and split.folds[-1].validation_to == t + 28 * DAY
    assert split.validation_from == t + 22 * DAY  # 7 days of the 28 -> 2 per fold


def test_backtest_days_are_inclusive_and_the_test_must_wait_for_labels():
    split = backtest_window_split(
        "2026-01-01", "2026-01-28", "2026-02-05", "2026-02-14", timedelta(days=7)
    )
    assert split.test_from == pd.Timestamp("2026-02-05", tz="UTC")
    assert split.test_to == pd.Timestamp("2026-02-15", tz="UTC")
    with pytest.raises(ValidationError, match="label delay"):
        backtest_window_split(
            "2026-01-01", "2026-01-28", "2026-02-03", "2026-02-14", timedelta(days=7)
        )
    with pytest.raises(ValidationError, match="YYYY-MM-DD"):
        backtest_window_split(
            "Jan 1st", "2026-01-28", "2026-02-05", "2026-02-14", timedelta(days=7)
        )
