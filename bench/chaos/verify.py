"""The chaos run's verdict, from what was read back after it (pure: plain data in, figures out).

What it proves, over the whole run and per phase (a phase runs from one fault's injection to
the next one's; the first, `steady`, from the first transaction to the first fault):
- lost: transactions the broker acknowledged that have no decision (and, apart, acknowledged
  ones missing from the transactions topic itself);
- duplicated: transactions decided more than once (at-least-once delivery), and how many of
  those repeats carry other features than the first decision (should be none: the store hands
  back each transaction's recorded features);
- double-counted / missed, as served: first decisions whose card counts are higher / lower than
  a replay of every sent event in time order through InMemoryFeatureStore gives (terminal counts
  may only lag, since they see other partitions; higher counts as double-counted); degraded
  decisions (Redis unavailable: no-history defaults) are counted apart and not compared;
- dead letters, by reason (steady valid traffic sends none, so each one is caused by a fault);
- traffic held: transactions offered, acknowledged and decided per second within the phase;
- the longest gap between decisions of each input partition, in the phase where it ended.
The final state of the aggregates (every card and terminal probed on the live store against
the replay) is checked by `bench.chaos.aggregates` and reported beside these figures.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any

import orjson

from bench.chaos.traffic import TrafficLog

Features = Mapping[str, float | None]


@dataclass(frozen=True)
class Decided:
    """One decision record, as read back."""

    transaction_id: str
    decided_at: float  # epoch seconds
    features: dict[str, float | None]
    degraded: bool
    score: float | None
    decision: str


@dataclass(frozen=True)
class InputRecord:
    """Where a transaction landed on the transactions topic."""

    partition: int
    offset: int
    timestamp: float  # the record's broker (create) time, epoch seconds


@dataclass
class Phase:
    """One fault (or the steady start), from its injection to the next phase."""

    name: str
    started_at: float
    detail: str = ""
    recovered_at: float | None = None  # when the faulted part served again
    ended_at: float = 0.0
    workers: int = 0  # running when it ended
    notes: list[str] = field(default_factory=list)


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def parse_decision(value: bytes) -> Decided:
    record = orjson.loads(value)
    return Decided(
        record["transaction_id"],
        epoch(record["decided_at"]),
        record["features"],
        bool(record.get("degraded")),
        record.get("score"),
        str(record.get("decision")),
    )


def same_value(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (
        a is not None and b is not None and (a == b or (math.isnan(a) and math.isnan(b)))
    )


def served_vs_replay(served: Features, ideal: Features) -> str:
    """'same', 'higher' (a count above the replay: something counted twice), 'lower' (a card
    count below it: a transaction missing) or 'other' (another card or event feature differs)."""
    higher = lower = other = False
    for name, value in served.items():
        want = ideal.get(name)
        if same_value(value, want):
            continue
        if name.startswith("terminal_"):
            # Terminal counts see every partition and may lag: only a count above counts.
            if name.startswith("terminal_count_") and value is not None and want is not None:
                higher = higher or value > want
            continue
        if name.startswith("card_count_") and value is not None and want is not None:
            higher, lower = higher or value > want, lower or value < want
        else:
            other = True
    return "higher" if higher else "lower" if lower else "other" if other else "same"


def by_transaction(decisions: Iterable[Decided]) -> dict[str, list[Decided]]:
    """Every decision of each transaction, earliest first."""
    grouped: dict[str, list[Decided]] = defaultdict(list)
    for decision in sorted(decisions, key=lambda d: d.decided_at):
        grouped[decision.transaction_id].append(decision)
    return grouped


def longest_gaps(
    times_by_partition: Mapping[int, Sequence[float]], start: float, end: float
) -> dict[int, float]:
    """Per partition (its decision times sorted): the longest stretch without a decision that
    ended within [start, end), whole even when it began before (the stall a fault causes
    begins at the last decision before its injection); a partition with no decision in the
    window: the time from its last decision (or the window's start) to the window's end."""
    gaps = {}
    for partition, times in times_by_partition.items():
        ending = [b - a for a, b in pairwise(times) if start <= b < end]
        before = [t for t in times if t < start]
        inside = [t for t in times if start <= t < end]
        if not before and inside:
            ending.append(inside[0] - start)  # the first decision of the run
        if ending:
            gaps[partition] = max(ending)
        else:
            gaps[partition] = end - (before[-1] if before else start)
    return gaps


def _in(start: float, end: float, at: float | None) -> bool:
    return at is not None and start <= at < end


def _rate(count: int, start: float, end: float) -> float:
    return round(count / (end - start), 1) if end > start else 0.0


@dataclass
class Verdict:
    totals: dict[str, Any]
    phases: list[dict[str, Any]]

    def failures(self) -> list[str]:
        """What breaks the promise (nothing lost, nothing counted twice, no dead letters)."""
        t = self.totals
        checks = {
            "lost": t["lost"],
            "missing from the transactions topic": t["missing_from_topic"],
            "send errors": t["send_errors"],
            "repeats with other features": t["duplicates_with_other_features"],
            "decisions double-counted": t["served"]["higher"],
            "dead letters": sum(t["dead_letters"].values()),
        }
        aggregates = t.get("aggregates") or {}
        checks["aggregates double-counted"] = aggregates.get("double_counted", 0)
        checks["aggregates missed"] = aggregates.get("missed", 0)
        return [f"{name}: {count}" for name, count in checks.items() if count]


def verify(
    log: TrafficLog,
    inputs: Mapping[str, InputRecord],
    decisions: Sequence[Decided],
    dead_letters: Sequence[tuple[str, float]],
    phases: Sequence[Phase],
    ideal: Mapping[str, Features],
    aggregates: Mapping[str, Any] | None = None,
) -> Verdict:
    """`dead_letters` as (reason, broker time); `ideal` the replay's features per transaction."""
    grouped = by_transaction(decisions)
    acked = [i for i, at in enumerate(log.acked_at) if at is not None]
    lost_ids = {log.ids[i] for i in acked} - grouped.keys()
    missing_from_topic = {log.ids[i] for i in acked} - inputs.keys()
    first = {tx: copies[0] for tx, copies in grouped.items()}
    served = {
        tx: served_vs_replay(d.features, ideal[tx])
        for tx, d in first.items()
        if not d.degraded and tx in ideal
    }
    repeats = {tx: copies for tx, copies in grouped.items() if len(copies) > 1}
    differing = {
        tx
        for tx, copies in repeats.items()
        if any(c.features != copies[0].features for c in copies[1:])
    }
    times_by_partition: dict[int, list[float]] = defaultdict(list)
    for tx, decision in first.items():
        if tx in inputs:
            times_by_partition[inputs[tx].partition].append(decision.decided_at)
    for times in times_by_partition.values():
        times.sort()
    sent_at = dict(zip(log.ids, log.sent_at, strict=True))

    rows = []
    for phase in phases:
        start, end = phase.started_at, phase.ended_at
        gaps = longest_gaps(times_by_partition, start, end)
        worst = max(gaps, key=lambda p: gaps[p]) if gaps else None
        in_phase = [tx for tx, d in first.items() if _in(start, end, d.decided_at)]
        latencies = [first[tx].decided_at - sent_at[tx] for tx in in_phase if tx in sent_at]
        rows.append(
            {
                "name": phase.name,
                "detail": phase.detail,
                "notes": phase.notes,
                "seconds": round(end - start, 1),
                "recovered_after_s": None
                if phase.recovered_at is None
                else round(phase.recovered_at - start, 1),
                "workers_after": phase.workers,
                "offered_tx_s": _rate(sum(_in(start, end, t) for t in log.sent_at), start, end),
                "acked_tx_s": _rate(sum(_in(start, end, t) for t in log.acked_at), start, end),
                "decided_tx_s": _rate(len(in_phase), start, end),
                "lost": sum(_in(start, end, sent_at[tx]) for tx in lost_ids),
                "duplicated": sum(_in(start, end, c[1].decided_at) for c in repeats.values()),
                "duplicates_with_other_features": sum(
                    _in(start, end, repeats[tx][1].decided_at) for tx in differing
                ),
                "double_counted": sum(served.get(tx) == "higher" for tx in in_phase),
                "missed": sum(served.get(tx) == "lower" for tx in in_phase),
                "degraded": sum(first[tx].degraded for tx in in_phase),
                "dead_letters": sum(_in(start, end, at) for _, at in dead_letters),
                "longest_gap_s": None if worst is None else round(gaps[worst], 2),
                "longest_gap_partition": worst,
                "gap_by_partition_s": {p: round(g, 2) for p, g in sorted(gaps.items())},
                "max_latency_s": round(max(latencies), 2) if latencies else None,
            }
        )
    totals = {
        "sent": len(log.ids),
        "acknowledged": len(acked),
        "send_errors": len(log.errors),
        "missing_from_topic": len(missing_from_topic),
        "decided": len(first),
        "decisions": len(decisions),
        "lost": len(lost_ids),
        "lost_examples": sorted(lost_ids)[:5],
        "duplicated": len(repeats),
        "extra_decisions": sum(len(c) - 1 for c in repeats.values()),
        "duplicates_with_other_features": len(differing),
        "duplicates_with_other_features_examples": sorted(differing)[:5],
        "degraded": sum(d.degraded for d in first.values()),
        "served": {kind: Counter(served.values()).get(kind, 0) for kind in _KINDS},
        "dead_letters": dict(Counter(reason for reason, _ in dead_letters)),
        "offered_tx_s": _rate(len(log.ids), log.started_at, log.stopped_at),
        "simulated_from": log.simulated_from,
        "simulated_to": log.simulated_to,
        "aggregates": dict(aggregates or {}),
    }
    return Verdict(totals, rows)


_KINDS = ("same", "higher", "lower", "other")
