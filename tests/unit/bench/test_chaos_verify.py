"""The chaos verifier on plain data: what it calls lost, duplicated, double-counted and missed,
how it places each in its phase, and the longest decision gap per partition."""

from __future__ import annotations

from bench.chaos.aggregates import probes, records_differing
from bench.chaos.traffic import TrafficLog
from bench.chaos.verify import (
    Decided,
    InputRecord,
    Phase,
    longest_gaps,
    served_vs_replay,
    verify,
)

IDEAL = {"amount": 10.0, "card_count_1h": 2.0, "card_amount_sum_1h": 30.0, "terminal_count_1d": 5.0}


def test_served_features_against_the_replay() -> None:
    assert served_vs_replay(IDEAL, IDEAL) == "same"
    assert served_vs_replay({**IDEAL, "card_count_1h": 3.0}, IDEAL) == "higher"
    assert served_vs_replay({**IDEAL, "card_count_1h": 1.0}, IDEAL) == "lower"
    assert served_vs_replay({**IDEAL, "card_amount_sum_1h": 31.0}, IDEAL) == "other"
    # Terminal counts see other partitions, which may lag: below is fine, above is not.
    assert served_vs_replay({**IDEAL, "terminal_count_1d": 4.0}, IDEAL) == "same"
    assert served_vs_replay({**IDEAL, "terminal_count_1d": 6.0}, IDEAL) == "higher"
    assert served_vs_replay({**IDEAL, "amount": None}, {**IDEAL, "amount": None}) == "same"


def test_a_gap_counts_whole_in_the_phase_where_it_ends() -> None:
    times = {0: [1.0, 2.0, 9.0, 9.5], 1: [-3.0, 0.5, 20.0], 2: [], 3: [-4.0]}
    assert longest_gaps(times, start=0.0, end=10.0) == {0: 7.0, 1: 3.5, 2: 10.0, 3: 14.0}
    assert longest_gaps(times, start=10.0, end=30.0) == {0: 20.5, 1: 19.5, 2: 20.0, 3: 34.0}


def _decided(tx: str, at: float, count: float = 2.0, degraded: bool = False) -> Decided:
    return Decided(tx, at, {**IDEAL, "card_count_1h": count}, degraded, 0.1, "approve")


def test_verify_places_each_finding_in_its_phase() -> None:
    log = TrafficLog(rate=1.0, started_at=0.0, stopped_at=20.0)
    for i in range(6):
        log.ids.append(f"tx{i}")
        log.sent_at.append(i * 3.0)
        log.acked_at.append(i * 3.0 + 0.1)
        log.partition.append(i % 2)
    inputs = {f"tx{i}": InputRecord(i % 2, i, i * 3.0) for i in range(6)}
    decisions = [
        _decided("tx0", 0.5),
        _decided("tx1", 3.5),
        _decided("tx1", 12.0),  # repeated after the fault, same features
        _decided("tx2", 6.5, count=3.0),  # counted something twice
        _decided("tx3", 11.0, degraded=True),
        _decided("tx4", 12.5),
        _decided("tx4", 13.0, count=9.0),  # repeated with other features
        # tx5 (sent at 15 s) never decided: lost in the second phase
    ]
    phases = [Phase("steady", 0.0, ended_at=10.0), Phase("fault", 10.0, ended_at=20.0)]
    ideal = {f"tx{i}": IDEAL for i in range(6)}
    verdict = verify(log, inputs, decisions, [("processing_error", 11.0)], phases, ideal)

    totals = verdict.totals
    assert totals["lost"] == 1 and totals["lost_examples"] == ["tx5"]
    assert totals["duplicated"] == 2 and totals["extra_decisions"] == 2
    assert totals["duplicates_with_other_features"] == 1
    assert totals["served"] == {"same": 3, "higher": 1, "lower": 0, "other": 0}
    assert totals["degraded"] == 1
    assert totals["dead_letters"] == {"processing_error": 1}
    steady, fault = verdict.phases
    assert (steady["lost"], steady["duplicated"], steady["double_counted"]) == (0, 0, 1)
    assert (fault["lost"], fault["duplicated"], fault["degraded"]) == (1, 2, 1)
    assert fault["duplicates_with_other_features"] == 1 and fault["dead_letters"] == 1
    assert steady["offered_tx_s"] == 0.4 and fault["offered_tx_s"] == 0.2
    # Partition 1 (tx1, tx3, tx5) decided nothing between 3.5 s and 11 s: the fault's gap.
    assert steady["gap_by_partition_s"] == {0: 6.0, 1: 3.5}
    assert fault["gap_by_partition_s"] == {0: 6.0, 1: 7.5}
    assert fault["longest_gap_s"] == 7.5 and fault["longest_gap_partition"] == 1
    assert set(verdict.failures()) == {
        "lost: 1",
        "repeats with other features: 1",
        "decisions double-counted: 1",
        "dead letters: 1",
    }


def test_a_clean_run_has_no_failures() -> None:
    log = TrafficLog(rate=1.0, ids=["a"], sent_at=[0.0], acked_at=[0.1], partition=[0])
    verdict = verify(
        log,
        {"a": InputRecord(0, 0, 0.0)},
        [_decided("a", 1.0)],
        [],
        [Phase("steady", 0.0, ended_at=2.0)],
        {"a": IDEAL},
        {"double_counted": 0, "missed": 0},
    )
    assert verdict.failures() == []
    bad = verify(log, {}, [], [], [], {}, {"double_counted": 2, "missed": 1})
    assert "aggregates double-counted: 2" in bad.failures()
    assert "aggregates missed: 1" in bad.failures()
    assert "missing from the transactions topic: 1" in bad.failures()


def test_probes_cover_every_card_and_terminal_after_the_last_event() -> None:
    events = [
        {
            "transaction_id": "t1",
            "card_id": "c1",
            "terminal_id": "T1",
            "timestamp": "2026-03-02T00:00:00Z",
        },
        {
            "transaction_id": "t2",
            "card_id": "c2",
            "terminal_id": "T1",
            "timestamp": "2026-03-02T00:00:05Z",
        },
        {
            "transaction_id": "t3",
            "card_id": "c1",
            "terminal_id": "T2",
            "timestamp": "2026-03-02T00:00:09Z",
        },
    ]
    cards, terminals = probes(events)
    assert [p["card_id"] for p in cards] == ["c1", "c2"]
    assert [p["terminal_id"] for p in terminals] == ["T1", "T2"]
    assert {p["timestamp"] for p in cards + terminals} == {"2026-03-02T00:00:10.000Z"}
    ids = {p["transaction_id"] for p in cards + terminals}
    assert len(ids) == 4 and not ids & {"t1", "t2", "t3"}
    # A terminal's probe is on a card of its own: no card history leaks into it.
    assert not {p["card_id"] for p in terminals} & {"c1", "c2"}


def test_records_are_compared_with_what_the_decision_carried() -> None:
    recorded = {"a": {"x": 1.0}, "b": {"x": 2.0}}
    assert records_differing(recorded, {"a": {"x": 1.0}, "b": {"x": 3.0}, "c": {"x": 1.0}}) == [
        "b",
        "c",
    ]
