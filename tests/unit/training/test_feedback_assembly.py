"""Assembling the retraining set from feedback + decisions, on hand-made records."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pandas as pd
import pytest

from fraud.errors import ValidationError
from stream.feedback import TopicRecord
from training.retrain import assemble_labelled_set

AS_OF = datetime(2026, 3, 20, tzinfo=UTC)
DELAY = timedelta(days=7)  # transactions up to 2026-03-13T00:00Z are mature


def record(
    value: dict[str, Any] | bytes, offset: int, partition: int = 0, topic: str = "t"
) -> TopicRecord:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return TopicRecord(topic, partition, offset, 0, None, raw)


def label(tid: str, verdict: str, at: str, offset: int, source: str = "analyst") -> TopicRecord:
    analyst = "chargeback" if source == "chargeback" else "analyst-01"
    value = {
        "transaction_id": tid,
        "label": verdict,
        "analyst_id": analyst,
        "labelled_at": at,
        "source": source,
    }
    return record(value, offset, topic="feedback")


def decision(
    tid: str,
    event_time: str,
    features: dict[str, Any],
    offset: int,
    *,
    version: str = "3",
    decided_at: str | None = None,
    partition: int = 0,
) -> TopicRecord:
    value = {
        "transaction_id": tid,
        "card_id": "card-00001",
        "event_time": event_time,
        "decided_at": decided_at or event_time,
        "score": 0.4,
        "decision": "approve",
        "thresholds": {"review": 0.5, "decline": 0.9},
        "model": {"name": "fraud-detector", "version": version, "alias": "champion"},
        "features": features,
        "reason_codes": [],
        "latency_ms": 3.0,
        "degraded": False,
    }
    return record(value, offset, partition, topic="decisions")


FEEDBACK = [
    # tx-a: the later label wins, and the two disagree.
    label("tx-a", "legit", "2026-03-02T00:00:00Z", 0),
    label("tx-a", "fraud", "2026-03-03T00:00:00Z", 1),
    # tx-b: same labelled_at, so the higher offset wins (listed first on purpose).
    label("tx-b", "fraud", "2026-03-04T00:00:00Z", 3),
    label("tx-b", "legit", "2026-03-04T00:00:00Z", 2),
    # tx-g: the same verdict twice: a duplicate, not a conflict.
    label("tx-g", "legit", "2026-03-04T00:00:00Z", 4),
    label("tx-g", "legit", "2026-03-05T00:00:00.5+00:00", 5),
    label("tx-c", "fraud", "2026-03-16T00:00:00Z", 6),  # transaction too recent
    label("tx-d", "legit", "2026-03-06T00:00:00Z", 7),  # no decision
    label("tx-e", "fraud", "2026-03-10T00:00:00Z", 8, source="chargeback"),
    label("tx-f", "fraud", "2026-03-21T00:00:00Z", 9),  # arrives after as_of
    record(b"{not json", 10, topic="feedback"),
    record({"transaction_id": "tx-h", "label": "maybe"}, 11, topic="feedback"),
]

DECISIONS = [
    decision("tx-g", "2026-03-03T09:00:00Z", {"amount": 10.0, "card_velocity_1h": 1}, 0),
    decision("tx-a", "2026-03-01T10:00:00Z", {"amount": 120.0, "card_velocity_1h": 2}, 1),
    decision(
        "tx-b", "2026-03-02T11:00:00Z", {"amount": 55.5, "card_velocity_1h": 0}, 0, partition=1
    ),
    decision("tx-c", "2026-03-15T00:00:00Z", {"amount": 9.0, "card_velocity_1h": 4}, 2),
    # tx-e was decided twice (at-least-once): the first decision counts.
    decision(
        "tx-e",
        "2026-03-05T12:00:00Z",
        {"amount": 999.0, "card_velocity_1h": 9},
        7,
        version="4",
        decided_at="2026-03-05T12:00:05Z",
    ),
    decision(
        "tx-e",
        "2026-03-05T12:00:00Z",
        {"amount": 900.0, "card_velocity_1h": 8},
        3,
        decided_at="2026-03-05T12:00:01Z",
    ),
    decision("tx-z", "2026-03-01T00:00:00Z", {"amount": 1.0, "card_velocity_1h": 0}, 4),
    decision("tx-y", "2026-03-18T00:00:00Z", {"amount": 2.0, "card_velocity_1h": 0}, 5),
    record(b'{"transaction_id": "tx-a", broken', 6, topic="decisions"),
]


def test_assembly_dedupes_resolves_conflicts_and_filters_by_delay_and_decision() -> None:
    frame, report = assemble_labelled_set(FEEDBACK, DECISIONS, as_of=AS_OF, label_delay=DELAY)

    assert list(frame.columns) == [
        "transaction_id",
        "event_time",
        "model_version",
        "label",
        "source",
        "amount",
        "card_velocity_1h",
    ]
    assert frame.to_dict("records") == [
        {
            "transaction_id": "tx-a",
            "event_time": pd.Timestamp("2026-03-01T10:00:00Z"),
            "model_version": "3",
            "label": 1,
            "source": "analyst",
            "amount": 120.0,
            "card_velocity_1h": 2.0,
        },
        {
            "transaction_id": "tx-b",
            "event_time": pd.Timestamp("2026-03-02T11:00:00Z"),
            "model_version": "3",
            "label": 1,
            "source": "analyst",
            "amount": 55.5,
            "card_velocity_1h": 0.0,
        },
        {
            "transaction_id": "tx-g",
            "event_time": pd.Timestamp("2026-03-03T09:00:00Z"),
            "model_version": "3",
            "label": 0,
            "source": "analyst",
            "amount": 10.0,
            "card_velocity_1h": 1.0,
        },
        {
            "transaction_id": "tx-e",
            "event_time": pd.Timestamp("2026-03-05T12:00:00Z"),
            "model_version": "3",
            "label": 1,
            "source": "chargeback",
            "amount": 900.0,
            "card_velocity_1h": 8.0,
        },
    ]
    assert str(frame["label"].dtype) == "int8"
    assert str(frame["amount"].dtype) == "float64"
    assert str(frame["event_time"].dt.tz) == "UTC"

    assert report.feedback_read == 12
    assert report.invalid == 2
    assert report.after_as_of == 1
    assert report.duplicates == 3
    assert report.conflicts == 2 and report.conflict_ids == ["tx-a", "tx-b"]
    assert report.too_recent == 1
    assert report.without_decision == 1
    assert report.decisions_read == 9
    assert report.decision_duplicates == 1
    # tx-z and tx-y have no feedback and are skipped unparsed; the broken record is parsed.
    assert report.decisions_invalid == 1
    assert report.rows == 4 and report.frauds == 3
    assert report.by_source == {"analyst": 3, "chargeback": 1}
    assert report.as_dict()["feedback_offsets"] == {"0": {"first": 0, "last": 11}}
    assert report.labelled_at_min == "2026-03-03T00:00:00Z"
    assert report.labelled_at_max == "2026-03-10T00:00:00Z"
    assert report.as_of == "2026-03-20T00:00:00Z" and report.label_delay_days == 7.0


def test_the_label_delay_boundary_is_inclusive() -> None:
    feedback = [label("tx-a", "fraud", "2026-03-14T00:00:00Z", 0)]
    decisions = [decision("tx-a", "2026-03-13T00:00:00Z", {"amount": 1.0}, 0)]
    frame, report = assemble_labelled_set(feedback, decisions, as_of=AS_OF, label_delay=DELAY)
    assert frame["transaction_id"].tolist() == ["tx-a"] and report.too_recent == 0
    later = [decision("tx-a", "2026-03-13T00:00:00.001Z", {"amount": 1.0}, 0)]
    frame, report = assemble_labelled_set(feedback, later, as_of=AS_OF, label_delay=DELAY)
    assert frame.empty and report.too_recent == 1


def test_assembly_at_an_earlier_as_of_ignores_labels_that_came_later() -> None:
    as_of = datetime(2026, 3, 2, 12, tzinfo=UTC)
    frame, report = assemble_labelled_set(
        FEEDBACK, DECISIONS, as_of=as_of, label_delay=timedelta(hours=1)
    )
    # Only tx-a's first label (legit, 03-02) had arrived; its transaction is mature.
    assert frame[["transaction_id", "label"]].to_dict("records") == [
        {"transaction_id": "tx-a", "label": 0}
    ]
    assert report.after_as_of == 9 and report.conflicts == 0


def test_feature_names_fix_the_columns_and_missing_features_are_nan() -> None:
    feedback = [label("tx-a", "fraud", "2026-03-03T00:00:00Z", 0)]
    decisions = [decision("tx-a", "2026-03-01T00:00:00Z", {"amount": 5.0, "extra": None}, 0)]
    frame, _ = assemble_labelled_set(
        feedback,
        decisions,
        as_of=AS_OF,
        label_delay=DELAY,
        feature_names=["card_velocity_1h", "amount"],
    )
    assert list(frame.columns)[5:] == ["card_velocity_1h", "amount"]
    assert math.isnan(frame.loc[0, "card_velocity_1h"]) and frame.loc[0, "amount"] == 5.0
    frame, _ = assemble_labelled_set(feedback, decisions, as_of=AS_OF, label_delay=DELAY)
    assert math.isnan(frame.loc[0, "extra"])  # logged as null


def test_unlabelled_mature_decisions_can_be_presumed_legit() -> None:
    frame, report = assemble_labelled_set(
        FEEDBACK, DECISIONS, as_of=AS_OF, label_delay=DELAY, presume_unlabelled_legit=True
    )
    assert frame["transaction_id"].tolist() == ["tx-z", "tx-a", "tx-b", "tx-g", "tx-e"]
    row = frame[frame["transaction_id"] == "tx-z"].iloc[0]
    assert row["label"] == 0 and row["source"] == "presumed_legit"
    assert report.presumed_legit == 1  # tx-y is too recent to presume anything
    assert report.by_source == {"analyst": 3, "chargeback": 1, "presumed_legit": 1}


def test_no_feedback_gives_an_empty_frame_with_the_meta_columns() -> None:
    frame, report = assemble_labelled_set([], DECISIONS, as_of=AS_OF, label_delay=DELAY)
    assert frame.empty
    assert list(frame.columns) == [
        "transaction_id",
        "event_time",
        "model_version",
        "label",
        "source",
    ]
    assert report.feedback_read == 0 and report.labelled_at_min is None


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        assemble_labelled_set([], [], as_of=datetime(2026, 3, 20), label_delay=DELAY)
    with pytest.raises(ValidationError, match="label_delay"):
        assemble_labelled_set([], [], as_of=AS_OF, label_delay=timedelta(days=-1))
    feedback = [label("tx-a", "fraud", "2026-03-03T00:00:00Z", 0)]
    decisions = [decision("tx-a", "2026-03-01T00:00:00Z", {"label": 1.0}, 0)]
    with pytest.raises(ValidationError, match="clash"):
        assemble_labelled_set(feedback, decisions, as_of=AS_OF, label_delay=DELAY)


def test_by_default_as_of_is_the_newest_decisions_event_time_on_the_streams_own_clock() -> None:
    """Simulated traffic months behind the wall clock: "older than the label delay" is counted
    back from the newest decision (tx-y, unlabelled, 03-18), so tx-c (03-15) is too recent."""
    feedback = [item for item in FEEDBACK if b'"tx-f"' not in item.value]  # labelled 03-21
    frame, report = assemble_labelled_set(feedback, DECISIONS, label_delay=DELAY)
    assert report.as_of == "2026-03-18T00:00:00Z" and report.as_of_source == "newest decision"
    assert frame["transaction_id"].tolist() == ["tx-a", "tx-b", "tx-g", "tx-e"]
    assert report.too_recent == 1 and report.after_as_of == 0
    # The wall clock would have taken tx-c (03-15) as final: its chargeback may still come.
    _, at_wall_clock = assemble_labelled_set(
        feedback, DECISIONS, as_of=datetime.now(UTC), label_delay=DELAY
    )
    assert at_wall_clock.too_recent == 0


def test_a_label_later_than_every_decision_moves_the_default_as_of_to_it() -> None:
    """A quiet stream: the label made after the newest transaction has arrived, and counts."""
    frame, report = assemble_labelled_set(FEEDBACK, DECISIONS, label_delay=DELAY)
    assert report.as_of == "2026-03-21T00:00:00Z" and report.as_of_source == "newest label"
    assert report.after_as_of == 0
    assert "tx-f" not in frame["transaction_id"].tolist()  # labelled, but never decided
    assert report.without_decision == 2


def test_without_any_record_the_default_as_of_is_the_wall_clock() -> None:
    before = datetime.now(UTC)
    broken = [record(b'{"event_time": "yesterday"}', 0, topic="decisions")]
    frame, report = assemble_labelled_set([], broken, label_delay=DELAY)
    assert frame.empty and report.as_of_source == "wall clock"
    assert before <= datetime.fromisoformat(report.as_of.replace("Z", "+00:00"))


def test_labels_dated_before_their_transaction_or_from_an_unknown_chargeback_feed_are_dropped() -> (
    None
):
    decisions = [decision("tx-a", "2026-03-05T00:00:00Z", {"amount": 1.0}, 0)]
    feedback = [
        label("tx-a", "fraud", "2026-03-06T00:00:00Z", 0),
        label("tx-a", "legit", "2026-03-04T00:00:00Z", 1),  # before the transaction
    ]
    frame, report = assemble_labelled_set(feedback, decisions, as_of=AS_OF, label_delay=DELAY)
    assert frame["label"].tolist() == [1] and report.before_transaction == 1
    impostor = [label("tx-a", "fraud", "2026-03-06T00:00:00Z", 0, source="chargeback")]
    frame, report = assemble_labelled_set(
        impostor, decisions, as_of=AS_OF, label_delay=DELAY, chargeback_analysts=("card-network",)
    )
    assert frame.empty and report.bad_source == 1


def test_a_label_dated_in_the_future_moves_neither_the_as_of_nor_a_verdict() -> None:
    decisions = [
        decision("tx-a", "2026-03-05T00:00:00Z", {"amount": 1.0}, 0),
        decision("tx-b", "2026-03-09T00:00:00Z", {"amount": 2.0}, 1),
    ]
    feedback = [
        label("tx-a", "fraud", "2026-03-06T00:00:00Z", 0),
        label("tx-a", "legit", "9999-01-01T00:00:00Z", 1),
    ]
    wall = datetime(2026, 12, 6, tzinfo=UTC)
    frame, report = assemble_labelled_set(
        feedback,
        decisions,
        label_delay=timedelta(days=2),
        presume_unlabelled_legit=True,
        wall_clock=wall,
    )
    # As of the newest decision (2026-03-09), not 9999 nor the wall clock: tx-b is too recent to
    # be presumed legit, and the honest fraud label of tx-a stands.
    assert report.as_of == "2026-03-09T00:00:00Z" and report.as_of_source == "newest decision"
    assert frame["transaction_id"].tolist() == ["tx-a"] and frame["label"].tolist() == [1]
    assert report.after_as_of == 1
    _frame, clamped = assemble_labelled_set(
        feedback, decisions, as_of=datetime(9999, 1, 1, tzinfo=UTC), label_delay=DELAY,
        wall_clock=wall,
    )  # fmt: skip
    assert clamped.as_of_clamped and clamped.as_of == "2026-12-06T00:00:00Z"
