"""The simulated analysts' desk: delay, error rate, capacity, chargebacks (pure, clock injected)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from fraud.errors import ConfigError
from schemas import validator
from simulator.analyst import AnalystConfig, AnalystDesk, observed_label, seeded_draw

T0 = datetime(2026, 3, 1, tzinfo=UTC).timestamp()  # a day boundary (epoch days)


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def alert(tid: str, event_time: float, decided_at: float | None = None) -> dict[str, Any]:
    decided = event_time + 0.01 if decided_at is None else decided_at
    return {"transaction_id": tid, "event_time": iso(event_time), "decided_at": iso(decided)}


def decision(tid: str, verdict: str, event_time: float) -> dict[str, Any]:
    return {"transaction_id": tid, "decision": verdict, "event_time": iso(event_time)}


def truth(tid: str, is_fraud: bool) -> dict[str, Any]:
    return {"transaction_id": tid, "is_fraud": is_fraud, "fraud_scenario": None}


def fixed(error: float = 0.99, analyst: float = 0.0) -> Callable[[str, str], float]:
    return lambda _tid, purpose: error if purpose == "error" else analyst


def config(**changes: Any) -> AnalystConfig:
    base: dict[str, Any] = {
        "review_delay_s": 10.0,
        "error_rate": 0.0,
        "daily_capacity": None,
        "chargeback_delay_s": 100.0,
        "day_s": 1000.0,
        "truth_wait_s": 50.0,
        "analysts": ("ann", "bob"),
    }
    return AnalystConfig(**{**base, **changes})


def test_an_alert_is_labelled_from_truth_review_delay_after_its_event_time() -> None:
    desk = AnalystDesk(config(), draw=fixed(analyst=0.7))
    desk.add_truth(truth("tx-1", True), T0)
    desk.add_alert(alert("tx-1", T0), T0)
    assert desk.due(T0 + 9.999) == []
    assert desk.summary.pending == 1
    (record,) = desk.due(T0 + 30)
    assert record == {
        "transaction_id": "tx-1",
        "label": "fraud",
        "analyst_id": "bob",  # draw 0.7 of two analysts
        "labelled_at": iso(T0 + 10).replace("Z", ".000000Z"),
        "source": "analyst",
    }
    assert validator("feedback")(record) == record
    assert desk.due(T0 + 60) == []
    assert desk.summary.labelled == 1 and desk.summary.pending == 0


def test_an_alert_waits_for_its_truth_then_gives_up_after_truth_wait() -> None:
    desk = AnalystDesk(config(), draw=fixed())
    desk.add_alert(alert("tx-late", T0), T0)
    desk.add_alert(alert("tx-never", T0), T0)
    assert desk.due(T0 + 20) == [] and desk.summary.waiting_for_truth == 2
    desk.add_truth(truth("tx-late", False), T0 + 25)
    (record,) = desk.due(T0 + 25)
    assert record["transaction_id"] == "tx-late" and record["label"] == "legit"
    assert desk.due(T0 + 51) == []
    assert desk.summary.without_truth == 1 and desk.summary.waiting_for_truth == 0
    # Truth that comes after the desk gave up is kept a while, then dropped unmatched.
    desk.add_truth(truth("tx-never", True), T0 + 52)
    assert desk.due(T0 + 200) == [] and desk.summary.truth_unmatched == 1


def test_the_error_rate_flips_labels_whose_draw_falls_below_it() -> None:
    assert observed_label(True, 0.2, 0.1) == ("legit", True)
    assert observed_label(False, 0.2, 0.1) == ("fraud", True)
    assert observed_label(True, 0.2, 0.2) == ("fraud", False)
    assert observed_label(False, 0.0, 0.0) == ("legit", False)
    desk = AnalystDesk(config(error_rate=0.5), draw=fixed(error=0.3))
    desk.add_truth(truth("tx-1", True), T0)
    desk.add_alert(alert("tx-1", T0), T0)
    (record,) = desk.due(T0 + 10)
    assert record["label"] == "legit" and desk.summary.errors_injected == 1


def test_seeded_draws_give_the_asked_error_rate_whatever_the_arrival_order() -> None:
    ids = [f"tx-{i}" for i in range(20_000)]
    draw = seeded_draw(7)
    assert draw("tx-1", "error") == seeded_draw(7)("tx-1", "error")
    assert draw("tx-1", "error") != seeded_draw(8)("tx-1", "error")

    def run(order: list[str]) -> dict[str, str]:
        desk = AnalystDesk(config(error_rate=0.1, seed=7))
        for tid in order:
            desk.add_truth(truth(tid, False), T0)
            desk.add_alert(alert(tid, T0), T0)
        return {r["transaction_id"]: r["label"] for r in desk.due(T0 + 10)}

    forward = run(ids)
    assert forward == run(ids[::-1])
    wrong = sum(label == "fraud" for label in forward.values()) / len(ids)
    assert 0.09 < wrong < 0.11  # binomial sd 0.002
    assert {draw(tid, "analyst") < 0.5 for tid in ids[:100]} == {True, False}


def test_daily_capacity_drops_the_alerts_beyond_it_per_day() -> None:
    desk = AnalystDesk(config(daily_capacity=2), draw=fixed())
    for i in range(5):  # all due on day 0 (seconds 10..14 of a 1000 s day)
        desk.add_truth(truth(f"tx-{i}", i == 4), T0)
        desk.add_alert(alert(f"tx-{i}", T0 + i), T0)
    desk.add_truth(truth("tx-next-day", True), T0)
    desk.add_alert(alert("tx-next-day", T0 + 1000), T0)
    labelled = [r["transaction_id"] for r in desk.due(T0 + 2000)]
    assert labelled == ["tx-0", "tx-1", "tx-next-day"]
    assert desk.summary.labelled == 3 and desk.summary.capacity_dropped == 3


def test_approved_frauds_come_back_as_chargebacks_after_their_delay() -> None:
    desk = AnalystDesk(config(daily_capacity=0, error_rate=1.0), draw=fixed(error=0.0))
    desk.add_truth(truth("tx-fraud", True), T0)
    desk.add_truth(truth("tx-legit", False), T0)
    desk.add_truth(truth("tx-flagged", True), T0)
    desk.add_decision(decision("tx-fraud", "approve", T0 - 5), T0)
    desk.add_decision(decision("tx-fraud", "approve", T0 - 5), T0 + 1)  # at-least-once repeat
    desk.add_decision(decision("tx-legit", "approve", T0), T0)
    desk.add_decision(decision("tx-flagged", "decline", T0), T0)  # an alert's business
    # The decision may also come before its truth.
    desk.add_decision(decision("tx-fraud-2", "approve", T0 + 3), T0)
    desk.add_truth(truth("tx-fraud-2", True), T0 + 4)
    assert desk.due(T0 + 94.9) == []
    records = desk.due(T0 + 103)
    assert [r["transaction_id"] for r in records] == ["tx-fraud", "tx-fraud-2"]
    assert records[0] == {
        "transaction_id": "tx-fraud",
        "label": "fraud",
        "analyst_id": "chargeback",
        "labelled_at": iso(T0 + 95).replace("Z", ".000000Z"),
        "source": "chargeback",
    }
    # Neither capacity (0 = none) nor the error rate (1.0) touches chargebacks.
    assert desk.summary.chargebacks == 2 and desk.summary.labelled == 0


def test_duplicate_alerts_are_counted_and_labelled_once() -> None:
    desk = AnalystDesk(config(), draw=fixed())
    desk.add_truth(truth("tx-1", False), T0)
    desk.add_alert(alert("tx-1", T0), T0)
    desk.add_alert(alert("tx-1", T0), T0 + 1)
    assert len(desk.due(T0 + 10)) == 1
    assert desk.summary.alerts == 1 and desk.summary.duplicate_alerts == 1


def test_simulated_time_behind_the_callers_clock_is_labelled_at_once_on_its_own_clock() -> None:
    """Simulated traffic months behind the wall clock: labels are due at once, and stamped
    event time + delay (the clock the worker and retraining compare them with)."""
    desk = AnalystDesk(config(), draw=fixed())
    simulated = T0 - 200 * 86_400
    desk.add_truth(truth("tx-1", True), T0)
    desk.add_alert(alert("tx-1", simulated, decided_at=T0), T0)
    desk.add_truth(truth("tx-2", True), T0)
    desk.add_decision(decision("tx-2", "approve", simulated + 1), T0)
    records = desk.due(T0)
    assert [(r["transaction_id"], r["source"]) for r in records] == [
        ("tx-1", "analyst"),
        ("tx-2", "chargeback"),
    ]
    assert records[0]["labelled_at"] == iso(simulated + 10).replace("Z", ".000000Z")
    assert records[1]["labelled_at"] == iso(simulated + 101).replace("Z", ".000000Z")


def test_simulated_time_ahead_of_the_callers_clock_releases_labels_as_it_moves_on() -> None:
    desk = AnalystDesk(config(), draw=fixed())
    ahead = T0 + 300 * 86_400
    desk.add_truth(truth("tx-1", False), T0)
    desk.add_alert(alert("tx-1", ahead, decided_at=T0), T0)
    assert desk.due(T0 + 1) == [] and desk.summary.pending == 1
    desk.add_truth(truth("tx-2", False), T0 + 2)
    desk.add_alert(alert("tx-2", ahead + 9.5, decided_at=T0 + 2), T0 + 2)
    assert desk.due(T0 + 2) == []  # the newest event time is 9.5 s on: not yet
    desk.add_decision(decision("tx-3", "approve", ahead + 10), T0 + 3)
    (record,) = desk.due(T0 + 3)
    assert record["transaction_id"] == "tx-1"
    assert record["labelled_at"] == iso(ahead + 10).replace("Z", ".000000Z")
    assert desk.newest_event_time == ahead + 10


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"error_rate": 1.5}, "error rate"),
        ({"review_delay_s": -1.0}, "delays"),
        ({"daily_capacity": -1}, "daily capacity"),
        ({"day_s": 0.0}, "day length"),
        ({"analysts": ()}, "at least one analyst"),
        ({"analysts": ("ann", "chargeback")}, "other than 'chargeback'"),
    ],
)
def test_bad_settings_are_rejected(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config(**changes)
