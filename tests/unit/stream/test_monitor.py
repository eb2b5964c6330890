"""Live precision/recall from feedback joined to decisions, and per-version drift. No services."""

from __future__ import annotations

import math

import pytest

from fraud.times import epoch_seconds
from stream.monitoring import LabelJoin, ModelMonitor, Quality, parse_reference

T0 = epoch_seconds("2026-03-01T12:00:00Z")


def decision(tx: str, tier: str, version: str = "3", score: float = 0.5, at: str = "12:00:00"):
    return {
        "transaction_id": tx,
        "card_id": "tok_abcdef",
        "event_time": f"2026-03-01T{at}Z",
        "decided_at": f"2026-03-01T{at}.004Z",
        "score": score,
        "decision": tier,
        "thresholds": {"review": 0.3, "decline": 0.8},
        "model": {"name": "fraud-detector", "version": version, "alias": "champion"},
        "features": {"amount": 42.0},
        "reason_codes": [],
        "latency_ms": 4.0,
        "degraded": False,
    }


def label(tx: str, verdict: str, source: str = "analyst"):
    return {
        "transaction_id": tx,
        "label": verdict,
        "analyst_id": "a-1",
        "labelled_at": "2026-03-03T09:00:00Z",
        "source": source,
    }


def feed(
    monitor: ModelMonitor, decisions: list[tuple[str, str]], labels: list[tuple[str, str, str]]
):
    for tx, tier in decisions:
        monitor.add_decision(decision(tx, tier))
    for tx, verdict, source in labels:
        monitor.add_feedback(label(tx, verdict, source))


def test_precision_and_recall_by_hand():
    monitor = ModelMonitor()
    decisions = [(f"d{i}", "decline") for i in range(10)] + [(f"r{i}", "review") for i in range(10)]
    decisions += [(f"a{i}", "approve") for i in range(100)]
    labels = [(f"d{i}", "fraud", "analyst") for i in range(9)] + [("d9", "legit", "analyst")]
    labels += [(f"r{i}", "fraud", "analyst") for i in range(4)]
    labels += [(f"r{i}", "legit", "analyst") for i in range(4, 10)]
    labels += [("a0", "fraud", "chargeback"), ("a1", "fraud", "chargeback")]  # missed frauds
    feed(monitor, decisions, labels)

    (health,) = monitor.snapshot()
    quality = health.quality
    assert health.version == "3"
    assert quality.precision_decline == pytest.approx(9 / 10)
    assert quality.precision_flagged == pytest.approx((9 + 4) / 20)
    assert quality.recall == pytest.approx((9 + 4) / (9 + 4 + 2))
    assert quality.labelled == 22
    assert quality.counts[("approve", "fraud")] == 2


def test_no_labels_means_no_estimate_rather_than_zero():
    quality = Quality()
    assert (quality.precision_decline, quality.precision_flagged, quality.recall) == (None,) * 3


def test_label_before_its_decision_waits_then_counts():
    monitor = ModelMonitor()
    monitor.add_feedback(label("x1", "fraud"))
    assert monitor.snapshot() == []
    monitor.add_decision(decision("x1", "decline"))
    (health,) = monitor.snapshot()
    assert health.quality.precision_decline == 1.0


def test_a_later_label_replaces_an_earlier_one_but_not_a_chargeback():
    join = LabelJoin()
    join.add_decision("t1", "3", "review", T0)
    join.add_label("t1", "legit", "analyst")
    join.add_label("t1", "fraud", "chargeback")  # the bank confirmed fraud later
    join.add_label("t1", "legit", "analyst")  # an analyst cannot undo a chargeback
    assert join.quality["3"].counts[("review", "fraud")] == 1
    assert join.quality["3"].labelled == 1


def test_a_redelivered_decision_is_counted_once_under_its_latest_version():
    monitor = ModelMonitor()
    monitor.add_decision(decision("t1", "decline", version="3"))
    monitor.add_feedback(label("t1", "fraud"))
    monitor.add_decision(decision("t1", "review", version="4"))  # re-scored after a restart
    by_version = {h.version: h.quality for h in monitor.snapshot()}
    assert by_version["4"].counts[("review", "fraud")] == 1
    assert "3" not in by_version or by_version["3"].labelled == 0


def test_versions_are_kept_apart():
    monitor = ModelMonitor()
    for version, verdict in (("3", "legit"), ("4", "fraud")):
        monitor.add_decision(decision(f"t{version}", "decline", version=version))
        monitor.add_feedback(label(f"t{version}", verdict))
    precision = {h.version: h.quality.precision_decline for h in monitor.snapshot()}
    assert precision == {"3": 0.0, "4": 1.0}


def test_old_decisions_leave_the_window_with_their_labels():
    join = LabelJoin(window_s=3600)
    join.add_decision("old", "3", "decline", T0)
    join.add_decision("new", "3", "decline", T0 + 3000)
    join.add_label("old", "legit", "analyst")
    join.add_label("new", "fraud", "analyst")
    assert join.quality["3"].precision_decline == 0.5
    join.expire(T0 + 3700)
    assert join.quality["3"].precision_decline == 1.0
    assert len(join) == 1


def test_stores_are_capped_separately_and_unmatched_labels_are_counted():
    join = LabelJoin(window_s=None, max_flagged=2, max_approved=3, max_pending_labels=2)
    for i in range(5):
        join.add_decision(f"a{i}", "3", "approve", T0 + i)
    join.add_decision("f0", "3", "decline", T0)
    assert len(join) == 3 + 1  # two approvals fell out, the decline did not
    for tx in ("a0", "a1", "ghost"):  # evicted or never seen: pending, then unmatched
        join.add_label(tx, "fraud", "chargeback")
    assert join.unmatched_labels == 1
    assert list(join.pending) == ["a1", "ghost"]


def test_unknown_values_are_rejected():
    join = LabelJoin()
    with pytest.raises(ValueError, match="unknown decision 'block'"):
        join.add_decision("t", "3", "block", T0)
    with pytest.raises(ValueError, match="unknown label 'maybe'"):
        join.add_label("t", "maybe", "analyst")


REFERENCE = {
    "edges_from": "validation",
    "score": {"bin_edges": [0.0, 0.5, 1.0], "validation": [0.9, 0.1]},
    "features": {
        "amount": {
            "kind": "numeric",
            "bin_edges": [0.0, 100.0, 1000.0],
            "validation": [0.5, 0.5],
            "missing_share": {"validation": 0.0},
        }
    },
}


def test_drift_is_measured_once_the_reference_is_supplied_and_enough_decisions_arrived():
    monitor = ModelMonitor(drift_window=100, min_drift_decisions=10)
    monitor.add_decision(decision("t0", "approve", score=0.1))
    assert monitor.wanted_references() == [("fraud-detector", "3")]
    monitor.set_reference("3", parse_reference(REFERENCE))
    assert monitor.wanted_references() == []
    for i in range(8):
        monitor.add_decision(decision(f"t{i + 1}", "approve", score=0.9))
    (health,) = monitor.snapshot()
    assert health.has_reference and health.drift_decisions == 9 and health.psi == {}
    monitor.add_decision(decision("t9", "approve", score=0.9))
    (health,) = monitor.snapshot()
    assert health.psi["score"] > 0.2  # all live scores in the bin training filled 10%
    # Every amount is 42 -> all in the first bin, where training had half: ln 2 / 2 ~ 0.35.
    assert health.psi["amount"] == pytest.approx(0.5 * 0.6931 - 0.4999 * -8.517, rel=0.01)


def test_decisions_read_before_the_reference_arrived_count_for_drift():
    monitor = ModelMonitor(drift_window=3, min_drift_decisions=3)
    for i, score in enumerate((0.1, 0.9, 0.9, 0.9)):  # the window keeps the last three
        monitor.add_decision(decision(f"t{i}", "approve", score=score))
    monitor.set_reference("3", parse_reference(REFERENCE))
    (health,) = monitor.snapshot()
    assert health.drift_decisions == 3
    assert monitor.drift["3"].counts[0] == [0, 3, 0]
    assert monitor.unbinned == {}


def test_a_version_without_reference_is_reported_as_such_and_can_be_asked_again():
    monitor = ModelMonitor()
    monitor.add_decision(decision("t0", "approve"))
    monitor.set_reference("3", None)
    (health,) = monitor.snapshot()
    assert (health.has_reference, health.psi) == (False, {})
    assert monitor.wanted_references() == []
    monitor.forget_reference("3")
    assert monitor.wanted_references() == [("fraud-detector", "3")]


def test_idle_versions_are_forgotten():
    monitor = ModelMonitor(join=LabelJoin(window_s=60))
    monitor.add_decision(decision("t0", "approve", version="2"))
    monitor.set_reference("2", parse_reference(REFERENCE))
    monitor.expire(T0 + 61)
    assert monitor.snapshot() == []
    assert monitor.drift == {}


def test_gauges_follow_the_snapshot_and_drop_versions_that_left():
    from stream.monitoring import MonitorMetrics

    monitor = ModelMonitor(drift_window=10, min_drift_decisions=1)
    feed(monitor, [("d1", "decline"), ("d2", "decline")], [("d1", "fraud", "analyst")])
    monitor.set_reference("3", parse_reference(REFERENCE))
    monitor.add_decision(decision("d3", "approve", score=0.1))
    metrics = MonitorMetrics()
    metrics.update(monitor.snapshot(), pending=2, unmatched=1, now=T0)
    sample = metrics.registry.get_sample_value
    v3 = {"model_version": "3"}
    assert sample("fraud_live_precision_decline", v3) == 1.0
    assert sample("fraud_live_recall", v3) == 1.0
    assert sample("fraud_live_labels", {**v3, "decision": "decline", "label": "fraud"}) == 1
    # Scores 0.5, 0.5, 0.1 on bins trained at 90% / 10%.
    by_hand = (1 / 3 - 0.9) * math.log((1 / 3) / 0.9) + (2 / 3 - 0.1) * math.log((2 / 3) / 0.1)
    assert sample("fraud_score_psi", v3) == pytest.approx(by_hand)
    assert sample("fraud_feature_psi", {**v3, "feature": "amount"}) is not None
    assert sample("fraud_drift_reference_loaded", v3) == 1
    assert sample("fraud_monitor_pending_labels") == 2
    assert sample("fraud_monitor_unmatched_labels") == 1

    metrics.update([], pending=0, unmatched=1, now=T0 + 60)
    assert sample("fraud_live_precision_decline", v3) is None
    assert sample("fraud_feature_psi", {**v3, "feature": "amount"}) is None
