"""Training replay: same numbers as the stream store, point in time, label delay, inputs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraud.errors import ValidationError
from stream.feature_store import InMemoryFeatureStore
from stream.features import FEATURE_NAMES
from training.bench_replay import history_events, synthetic_history
from training.replay import replay_features

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


def stream_features(history: pd.DataFrame, batch: int = 100) -> pd.DataFrame:
    """The features the stream store computes, labels arriving at timestamp + DELAY."""
    store = InMemoryFeatureStore()
    events = history_events(history)
    fraud = set(history.loc[history["is_fraud"] == 1, "transaction_id"])
    rows = []
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        rows += store.process_batch(chunk)
        labelled_at = pd.to_datetime([e["timestamp"] for e in chunk], utc=True) + DELAY
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
    assert replayed["terminal_fraud_rate_28d"].max() > 0
    same(replayed, stream_features(history))


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
    rates = replay_features(history, timedelta(hours=6))["terminal_fraud_rate_1d"].tolist()
    assert np.isnan(rates[0])
    assert rates[1:] == [0.0, 0.0, pytest.approx(1 / 3)]
    immediate = replay_features(history, timedelta(0))["terminal_fraud_rate_1d"].tolist()
    assert immediate[1:] == [1.0, pytest.approx(1 / 2), pytest.approx(1 / 3)]


def test_unknown_labels_do_not_change_features(history: pd.DataFrame) -> None:
    """Relabelling transactions whose label is not yet known at t changes nothing at t."""
    full = replay_features(history, DELAY)
    cut = history["timestamp"].min() + pd.Timedelta(DELAY)
    flipped = history.assign(is_fraud=1 - history["is_fraud"])
    before = full["transaction_id"].isin(history.loc[history["timestamp"] < cut, "transaction_id"])
    changed = replay_features(flipped, DELAY)
    same(changed[before.to_numpy()], full[before.to_numpy()])
    assert not changed.equals(full)


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
    same(
        replayed[["card_count_24h", "terminal_fraud_rate_28d"]],
        full[["card_count_24h", "terminal_fraud_rate_28d"]],
    )


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
