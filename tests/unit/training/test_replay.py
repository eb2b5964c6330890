"""Training replay: same numbers as the stream store, point in time, label delay, inputs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.features import history_events, synthetic_history
from fraud.errors import ValidationError
from stream.features import FEATURE_NAMES, InMemoryFeatureStore
from training.data import replay_features

DELAY = timedelta(days=2)


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    """3 days of synthetic history, plus transactions sharing card and second with another."""
    frame = synthetic_history(4_000, days=3, seed=7)
    twins = frame.sample(40, random_state=3).assign(
        transaction_id=[f"tie{n:03d}" for n in range(40)],
        amount=lambda f: f["amount"] * 1.37 + 0.01,
        terminal_id="term_tied",
        terminal_lat=40.0,
        terminal_lon=-3.0,
    )
    return pd.concat([frame, twins]).sort_values(["timestamp", "transaction_id"], ignore_index=True)


def same(left: pd.DataFrame, right: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(left.reset_index(drop=True), right.reset_index(drop=True))


def stream_features(
    history: pd.DataFrame,
    batch: int = 100,
    label_lag: Callable[[int], pd.TimedeltaIndex] | None = None,
) -> pd.DataFrame:
    """The features a stream store built with DELAY computes, each fraud labelled after
    `label_lag(batch size)` (default: DELAY) from its transaction."""
    store = InMemoryFeatureStore(label_delay=DELAY)
    events = history_events(history)
    fraud = set(history.loc[history["is_fraud"] == 1, "transaction_id"])
    rows = []
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        rows += store.process_batch(chunk)
        lag = pd.to_timedelta([DELAY] * len(chunk)) if label_lag is None else label_lag(len(chunk))
        labelled_at = pd.to_datetime([e["timestamp"] for e in chunk], utc=True) + lag
        store.apply_labels(
            [
                {
                    "transaction_id": e["transaction_id"],
                    "label": "fraud",
                    "labelled_at": at.isoformat(),
                }
                for e, at in zip(chunk, labelled_at, strict=True)
                if e["transaction_id"] in fraud
            ]
        )
    frame = pd.DataFrame(rows, columns=list(FEATURE_NAMES), dtype=float)
    frame.insert(0, "transaction_id", [e["transaction_id"] for e in events])
    return frame


def test_replay_equals_the_stream_store_exactly(history: pd.DataFrame) -> None:
    replayed = replay_features(history, DELAY)
    assert history.duplicated(["card_id", "timestamp"]).any(), "needs equal-time events"
    assert history["is_fraud"].sum() > 10
    assert replayed["terminal_fraud_rate_1d_after_delay"].max() > 0
    same(replayed, stream_features(history))


def test_stream_labels_sooner_than_the_delay_give_the_training_features(
    history: pd.DataFrame,
) -> None:
    """No skew: whenever within the delay the analysts' labels arrive, the stream computes what
    training computed with every label arriving exactly at the delay."""
    rng = np.random.default_rng(5)
    delay_us = DELAY // timedelta(microseconds=1)

    def anywhere_in_the_delay(n: int) -> pd.TimedeltaIndex:
        return pd.to_timedelta(rng.integers(0, delay_us + 1, n), unit="us")

    def within_minutes(n: int) -> pd.TimedeltaIndex:
        return pd.to_timedelta(rng.integers(0, 600, n), unit="s")

    replayed = replay_features(history, DELAY)
    same(stream_features(history, label_lag=anywhere_in_the_delay), replayed)
    same(stream_features(history, batch=37, label_lag=within_minutes), replayed)


def hot_terminal(hours: int, fraud_hours: range) -> pd.DataFrame:
    """One transaction an hour at terminal term_hot (each by its own card) from 2024-05-01."""
    base = pd.Timestamp("2024-05-01T00:00:00Z")
    return pd.DataFrame(
        {
            "transaction_id": [f"hot{hour:04d}" for hour in range(hours)],
            "timestamp": [base + pd.Timedelta(hours=hour) for hour in range(hours)],
            "card_id": [f"card_hot{hour:04d}" for hour in range(hours)],
            "customer_id": "c",
            "terminal_id": "term_hot",
            "amount": 10.0,
            "currency": "EUR",
            "is_fraud": [int(hour in fraud_hours) for hour in range(hours)],
        }
    )


def test_after_delay_fraud_rates_are_informative_with_a_week_of_delay() -> None:
    """With the default 7-day delay, training sees every fraud of the after-delay windows: the
    1 d and 7 d rates are not stuck at 0 as rates over [t - w, t) were."""
    frame = hot_terminal(16 * 24, fraud_hours=range(72, 84))  # frauds on day 3, 00:00-11:00
    replayed = replay_features(frame, timedelta(days=7)).set_index("transaction_id")
    at = replayed.loc["hot0252"]  # day 10, 12:00: the windows end at day 3, 12:00
    assert at["terminal_count_1d_after_delay"] == 24.0  # hours 60-83
    assert at["terminal_fraud_rate_1d_after_delay"] == pytest.approx(12 / 24)
    assert at["terminal_count_7d_after_delay"] == 84.0  # hours 0-83
    assert at["terminal_fraud_rate_7d_after_delay"] == pytest.approx(12 / 84)
    assert at["terminal_fraud_rate_28d_after_delay"] == pytest.approx(12 / 84)
    assert at["terminal_count_1d"] == 24.0
    rates_1d = replayed["terminal_fraud_rate_1d_after_delay"]
    # Positive exactly while the 1 d window ending 7 d back overlaps the frauds.
    positive = replayed.index[rates_1d > 0]
    assert positive.tolist() == [f"hot{hour:04d}" for hour in range(72 + 7 * 24 + 1, 84 + 8 * 24)]


def brute_force_after_delay(history: pd.DataFrame, delay: timedelta) -> pd.DataFrame:
    """The after-delay terminal features from their definition: every pair of transactions of a
    terminal compared (no sorting, no searching)."""
    ts = pd.to_datetime(history["timestamp"], utc=True).dt.as_unit("us").astype("int64").to_numpy()
    fraud = history["is_fraud"].to_numpy() == 1
    delay_us = delay // timedelta(microseconds=1)
    out = pd.DataFrame({"transaction_id": history["transaction_id"].to_numpy()})
    for window, days in (("1d", 1), ("7d", 7), ("28d", 28)):
        counts, rates = np.zeros(len(history)), np.full(len(history), np.nan)
        for rows in history.groupby("terminal_id").indices.values():
            t, s = ts[rows][:, None], ts[rows][None, :]  # scored transaction, earlier one
            inside = (s >= t - delay_us - days * 86_400_000_000) & (s < t - delay_us)
            known_frauds = (inside & fraud[rows][None, :] & (s + delay_us <= t)).sum(axis=1)
            counts[rows] = inside.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                rates[rows] = np.where(counts[rows] > 0, known_frauds / counts[rows], np.nan)
        out[f"terminal_count_{window}_after_delay"] = counts
        out[f"terminal_fraud_rate_{window}_after_delay"] = rates
    return out


def test_after_delay_features_follow_their_definition() -> None:
    week = timedelta(days=7)
    synthetic = synthetic_history(1_500, days=40, seed=5).assign(
        terminal_id=lambda f: f["terminal_id"].str[:-1]
    )
    frame = pd.concat([synthetic, hot_terminal(40 * 24, fraud_hours=range(100, 400, 7))])
    frame = frame.sort_values(["timestamp", "transaction_id"], ignore_index=True)
    expected = brute_force_after_delay(frame, week)
    replayed = replay_features(frame, week)
    same(replayed[expected.columns], expected)
    assert (expected["terminal_fraud_rate_1d_after_delay"] > 0).sum() > 100
    assert (expected["terminal_fraud_rate_7d_after_delay"] > 0).sum() > 100


def test_output_layout(history: pd.DataFrame) -> None:
    replayed = replay_features(history.sample(frac=1.0, random_state=1), DELAY)
    assert list(replayed.columns) == ["transaction_id", *FEATURE_NAMES]
    assert all(replayed[name].dtype == np.float64 for name in FEATURE_NAMES)
    expected = history.sort_values(["timestamp", "transaction_id"])["transaction_id"]
    assert replayed["transaction_id"].tolist() == expected.tolist()
    same(replayed, replay_features(history, DELAY))  # input order does not matter


def test_appending_later_events_changes_no_earlier_feature(history: pd.DataFrame) -> None:
    full = replay_features(history, DELAY)
    cut = history["timestamp"].iloc[len(history) // 2]
    earlier = replay_features(history[history["timestamp"] < cut], DELAY)
    same(earlier, full.iloc[: len(earlier)])


def test_labels_become_visible_only_after_the_delay() -> None:
    base = pd.Timestamp("2024-05-01T00:00:00Z")
    rows = [
        ("tx1", base, "card_A", 1),
        ("tx2", base + pd.Timedelta(hours=1), "card_B", 0),
        ("tx3", base + pd.Timedelta(hours=6) - pd.Timedelta(microseconds=1), "card_C", 0),
        ("tx4", base + pd.Timedelta(hours=6), "card_D", 0),
        ("tx5", base + pd.Timedelta(hours=6, microseconds=1), "card_E", 0),
        ("tx6", base + pd.Timedelta(hours=7, microseconds=1), "card_F", 1),
    ]
    history = pd.DataFrame(
        {
            "transaction_id": [r[0] for r in rows],
            "timestamp": [r[1] for r in rows],
            "card_id": [r[2] for r in rows],
            "customer_id": "c",
            "terminal_id": "term_1",
            "amount": 10.0,
            "currency": "EUR",
            "is_fraud": [r[3] for r in rows],
        }
    )
    six_hours = replay_features(history, timedelta(hours=6))
    counts = six_hours["terminal_count_1d_after_delay"].tolist()
    rates = six_hours["terminal_fraud_rate_1d_after_delay"].tolist()
    assert counts == [0.0, 0.0, 0.0, 0.0, 1.0, 2.0]  # windows end 6 h before each transaction
    assert np.isnan(rates[:4]).all()
    assert rates[4:] == [1.0, pytest.approx(1 / 2)]  # tx1's label known at 6 h
    assert six_hours["terminal_count_1d"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    immediate = replay_features(history, timedelta(0))
    assert immediate["terminal_count_1d_after_delay"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert immediate["terminal_fraud_rate_1d_after_delay"].tolist()[1:] == [
        1.0,
        pytest.approx(1 / 2),
        pytest.approx(1 / 3),
        pytest.approx(1 / 4),
        pytest.approx(1 / 5),
    ]


def test_unknown_labels_do_not_change_features(history: pd.DataFrame) -> None:
    """Relabelling transactions whose label is not yet known at t changes nothing at t."""
    full = replay_features(history, DELAY)
    cut = history["timestamp"].min() + pd.Timedelta(DELAY)
    flipped = history.assign(is_fraud=1 - history["is_fraud"])
    before = full["transaction_id"].isin(history.loc[history["timestamp"] < cut, "transaction_id"])
    changed = replay_features(flipped, DELAY)
    same(changed[before.to_numpy()], full[before.to_numpy()])
    assert not changed.equals(full)


def test_labels_of_the_last_delay_never_matter(history: pd.DataFrame) -> None:
    """Point in time, after the delay: the label of a transaction at s reaches no feature at
    t <= s + DELAY, even one known by then, so relabelling everything from `cut - DELAY` on
    changes no row before `cut`, and the relabelled rows' first effect is right after it."""
    full = replay_features(history, DELAY)
    cut = history["timestamp"].min() + pd.Timedelta(days=2, hours=12)
    recent = history["timestamp"] >= cut - pd.Timedelta(DELAY)
    flipped = history.assign(
        is_fraud=np.where(recent, 1 - history["is_fraud"], history["is_fraud"])
    )
    changed = replay_features(flipped, DELAY)
    stamps = history.set_index("transaction_id").loc[full["transaction_id"], "timestamp"]
    before = (stamps < cut).to_numpy()
    same(changed[before], full[before])
    rates = [f"terminal_fraud_rate_{w}_after_delay" for w in ("1d", "7d", "28d")]
    assert not changed.loc[~before, rates].equals(full.loc[~before, rates])
    label_free = [name for name in FEATURE_NAMES if "fraud_rate" not in name]
    same(changed[label_free], full[label_free])


def test_iso_strings_csv_and_parquet_give_the_same_features(
    history: pd.DataFrame, tmp_path: Path
) -> None:
    expected = replay_features(history, DELAY)
    as_text = history.assign(timestamp=history["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    same(replay_features(as_text, DELAY), expected)
    as_text.to_csv(tmp_path / "h.csv", index=False)
    from_csv = pd.read_csv(tmp_path / "h.csv", dtype={"merchant_category": str})
    same(replay_features(from_csv, DELAY), expected)
    history.to_parquet(tmp_path / "h.parquet")
    same(replay_features(pd.read_parquet(tmp_path / "h.parquet"), DELAY), expected)


def test_minimal_backtest_columns(history: pd.DataFrame) -> None:
    transaction = ["transaction_id", "timestamp", "card_id", "customer_id", "terminal_id"]
    minimal = history[[*transaction, "amount", "currency", "is_fraud"]]
    replayed = replay_features(minimal, DELAY)
    assert (replayed["channel_code"] == 0).all()
    assert (replayed["merchant_category_group_code"] == 0).all()
    for name in ("distance_from_prev_tx_km", "card_new_country_30d", "card_new_device_30d"):
        assert replayed[name].isna().all()
    full = replay_features(history, DELAY)
    kept = ["card_count_24h", "terminal_count_7d", "terminal_fraud_rate_1d_after_delay"]
    same(replayed[kept], full[kept])


def test_customer_attributes_in_the_history_are_ignored(history: pd.DataFrame) -> None:
    rng = np.random.default_rng(0)
    with_customers = history.assign(
        birth_year=rng.integers(1940, 2005, len(history)),
        gender=rng.choice(["F", "M"], len(history)),
        age=rng.integers(18, 85, len(history)),
    )
    same(replay_features(with_customers, DELAY), replay_features(history, DELAY))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h: h.drop(columns=["is_fraud"]), "is_fraud"),
        (lambda h: pd.concat([h, h.head(1)]), "repeated transaction ids"),
        (lambda h: h.assign(timestamp="soon"), "timestamp"),
        (lambda h: h.assign(is_fraud=2), "0 or 1"),
        (lambda h: h.assign(amount=0.0), "positive"),
        (lambda h: h.assign(card_id=None), "card_id"),
    ],
)
def test_bad_history_is_rejected_with_the_problem_named(history, change, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match=message):
        replay_features(change(history.head(50)), DELAY)


def test_negative_label_delay_is_rejected(history: pd.DataFrame) -> None:
    with pytest.raises(ValidationError, match="label_delay"):
        replay_features(history.head(5), timedelta(hours=-1))
