"""A labelled set for retraining, from `feedback` joined to the feature vectors logged in `decisions`.

    feedback, decisions = read_feedback(settings), read_decisions(settings)
    frame, report = assemble_labelled_set(
        feedback, decisions, label_delay=timedelta(days=settings.label_delay_days)
    )

`as_of` is the moment the set is assembled "as of". By default it is the latest moment the two
topics show: the newest decision's event_time (the stream's "now" in event time) or the newest
label's labelled_at, whichever is later; the wall clock only when both topics are empty. For a
bank's own traffic that is about the wall clock, as it always was. For simulated traffic
(simulator.live) it is simulated time, which runs apart from the wall clock, as do the labels
the simulated analysts stamp on that clock: "older than the label delay" is then measured on
the transactions' clock, not against a wall clock months away. Labels take part so that one
made after the newest transaction (a person labelling a quiet stream) is not left out; the
simulated analysts may release labels stamped up to their chargeback delay after the newest
transaction, which moves as_of that far on, and a transaction older than as_of minus the label
delay (longer than that chargeback delay) had its labels released all the same.

`as_of` never passes the wall clock: a label dated in the future (a clock gone wrong, a
hostile record) can neither move it on nor win a transaction's label (`as_of_clamped`).

Rules, in the order they apply:
1. Feedback that is not JSON or breaks schemas/v1/feedback.json is counted `invalid` and dropped;
   so is a chargeback from an analyst id the deployment does not list as its chargeback feed
   (`settings.chargeback_analysts`; counted `bad_source`).
2. Feedback labelled after `as_of` had not arrived then: counted `after_as_of`, dropped (so an
   assembly at a past `as_of` gives the same set later).
3. A label dated before its transaction's event time judges nothing: counted
   `before_transaction`, dropped.
4. Per transaction the latest label wins, by labelled_at, then by position in the topic (all
   records of a transaction share a partition, key = transaction id). Extra records for a
   transaction count as `duplicates`; transactions whose records disagree are `conflicts`.
5. The winning label joins the transaction's first decision (earliest decided_at, then position;
   later ones are at-least-once repeats). No decision: counted `without_decision`.
6. Only transactions older than the label delay are kept (event_time <= as_of - label_delay):
   younger ones may still get a chargeback, so their labels are not final (`too_recent`).

The frame has transaction_id, event_time, model_version, label (1 = fraud), source, then the
feature columns exactly as the scorer logged them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pandas as pd

from fraud.errors import ValidationError
from fraud.settings import Settings
from fraud.times import parse_utc
from schemas import validator
from stream.feedback import TopicRecord, scan_topic

META_COLUMNS = ("transaction_id", "event_time", "model_version", "label", "source")
LABEL_VALUES = {"fraud": 1, "legit": 0}
PRESUMED_LEGIT = "presumed_legit"
_TRANSACTION_ID = re.compile(rb'"transaction_id"\s*:\s*"([^"\\]*)"')
_EVENT_TIME = re.compile(rb'"event_time"\s*:\s*"([^"\\]*)"')


@dataclass
class OffsetRange:
    """First and last offset read from one partition."""

    first: int
    last: int


@dataclass
class AssemblyReport:
    """What the assembly read, dropped and kept; `as_dict()` is JSON-ready for run lineage."""

    as_of: str
    label_delay_days: float
    as_of_source: str = "given"  # or "newest decision", "newest label", "wall clock"
    as_of_clamped: bool = False  # the topics' newest moment was after the wall clock
    feedback_read: int = 0
    invalid: int = 0
    bad_source: int = 0
    after_as_of: int = 0
    before_transaction: int = 0
    duplicates: int = 0
    conflicts: int = 0
    conflict_ids: list[str] = field(default_factory=list)
    too_recent: int = 0
    without_decision: int = 0
    decisions_read: int = 0
    decisions_invalid: int = 0
    decision_duplicates: int = 0
    presumed_legit: int = 0
    rows: int = 0
    frauds: int = 0
    by_source: dict[str, int] = field(default_factory=dict)
    feedback_offsets: dict[str, OffsetRange] = field(default_factory=dict)
    labelled_at_min: str | None = None
    labelled_at_max: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Label:
    transaction_id: str
    label: str
    source: str
    labelled_at: datetime
    position: tuple[int, int]  # (partition, offset)


@dataclass(frozen=True)
class _Decision:
    event_time: datetime
    decided_at: datetime
    position: tuple[int, int]
    model_version: str
    features: Mapping[str, Any]


class EventClock:
    """The newest event_time among the decision records it was shown (raw values, no parsing
    beyond that field): the stream's "now" in event time. A record without one is skipped."""

    def __init__(self) -> None:
        self.newest: datetime | None = None

    def see(self, value: bytes) -> None:
        match = _EVENT_TIME.search(value)
        if match is None:
            return
        try:
            moment = parse_utc(match.group(1).decode())
        except (ValueError, UnicodeDecodeError):
            return
        if self.newest is None or moment > self.newest:
            self.newest = moment


def latest_moment(
    newest_decision: datetime | None,
    feedback: Iterable[TopicRecord],
    now: datetime | None = None,
) -> tuple[datetime, str]:
    """The default as-of and where it came from: the newest decision's event_time or the newest
    valid label's labelled_at, whichever is later; the wall clock when there is neither.

    A label dated after the wall clock does not count: one label dated far ahead (year 9999)
    would otherwise move the as-of and turn every recent undisputed decision into a
    presumed-legit row."""
    now = now or datetime.now(UTC)
    labelled = [
        moment
        for moment in (
            parse_utc(parsed["labelled_at"])
            for parsed in (_parse(record, "feedback") for record in feedback)
            if parsed is not None
        )
        if moment <= now
    ]
    newest_label = max(labelled, default=None)
    if newest_label is not None and (newest_decision is None or newest_label > newest_decision):
        return newest_label, "newest label"
    if newest_decision is not None:
        return newest_decision, "newest decision"
    return datetime.now(UTC), "wall clock"


def _parse(record: TopicRecord, kind: str) -> dict[str, Any] | None:
    try:
        parsed: dict[str, Any] = validator(kind)(orjson.loads(record.value))
        parse_utc(parsed["labelled_at" if kind == "feedback" else "event_time"])
        if kind == "decision":
            parse_utc(parsed["decided_at"])
    except (orjson.JSONDecodeError, ValidationError, ValueError):
        return None
    return parsed


def latest_labels(
    feedback: Iterable[TopicRecord],
    as_of: datetime,
    report: AssemblyReport,
    event_times: Mapping[str, datetime] | None = None,
    chargeback_analysts: Collection[str] = ("chargeback",),
) -> dict[str, _Label]:
    """Rules 1-4: the winning label of each transaction; counts go into `report`.
    `event_times` (transaction id -> event time) lets labels dated before it be dropped."""
    by_transaction: dict[str, list[_Label]] = {}
    for record in feedback:
        report.feedback_read += 1
        offsets = report.feedback_offsets.setdefault(
            str(record.partition), OffsetRange(record.offset, record.offset)
        )
        offsets.first, offsets.last = (
            min(offsets.first, record.offset),
            max(offsets.last, record.offset),
        )
        parsed = _parse(record, "feedback")
        if parsed is None:
            report.invalid += 1
            continue
        if parsed["source"] == "chargeback" and parsed["analyst_id"] not in chargeback_analysts:
            report.bad_source += 1
            continue
        labelled_at = parse_utc(parsed["labelled_at"])
        if labelled_at > as_of:
            report.after_as_of += 1
            continue
        event_time = None if event_times is None else event_times.get(parsed["transaction_id"])
        if event_time is not None and labelled_at < event_time:
            report.before_transaction += 1
            continue
        label = _Label(
            parsed["transaction_id"],
            parsed["label"],
            parsed["source"],
            labelled_at,
            (record.partition, record.offset),
        )
        by_transaction.setdefault(label.transaction_id, []).append(label)

    winners: dict[str, _Label] = {}
    for transaction_id, labels in by_transaction.items():
        report.duplicates += len(labels) - 1
        if len({label.label for label in labels}) > 1:
            report.conflict_ids.append(transaction_id)
        winners[transaction_id] = max(labels, key=lambda lab: (lab.labelled_at, lab.position))
    report.conflict_ids.sort()
    report.conflicts = len(report.conflict_ids)
    return winners


def first_decisions(
    decisions: Iterable[TopicRecord],
    wanted: set[str] | None,
    report: AssemblyReport,
) -> dict[str, _Decision]:
    """Rule 4's other side: the first valid decision of each transaction in `wanted` (all if
    None). Records of other transactions are skipped before parsing."""
    first: dict[str, _Decision] = {}
    for record in decisions:
        report.decisions_read += 1
        if wanted is not None:
            match = _TRANSACTION_ID.search(record.value)
            if match is not None and match.group(1).decode(errors="replace") not in wanted:
                continue
        parsed = _parse(record, "decision")
        if parsed is None:
            report.decisions_invalid += 1
            continue
        transaction_id = parsed["transaction_id"]
        if wanted is not None and transaction_id not in wanted:
            continue
        decision = _Decision(
            parse_utc(parsed["event_time"]),
            parse_utc(parsed["decided_at"]),
            (record.partition, record.offset),
            str(parsed["model"]["version"]),
            parsed["features"],
        )
        current = first.get(transaction_id)
        if current is not None:
            report.decision_duplicates += 1
            if (current.decided_at, current.position) <= (decision.decided_at, decision.position):
                continue
        first[transaction_id] = decision
    return first


def assemble_labelled_set(
    feedback: Iterable[TopicRecord],
    decisions: Iterable[TopicRecord],
    *,
    as_of: datetime | None = None,
    label_delay: timedelta,
    feature_names: Sequence[str] | None = None,
    presume_unlabelled_legit: bool = False,
    chargeback_analysts: Collection[str] = ("chargeback",),
    wall_clock: datetime | None = None,
) -> tuple[pd.DataFrame, AssemblyReport]:
    """The labelled set and its report (rules in the module docstring). Pure but for the
    wall clock (`wall_clock`, default now), which `as_of` never passes.

    `as_of` defaults to the newest event_time of `decisions` or labelled_at of `feedback`,
    whichever is later (see the module docstring). `feature_names` fixes the feature columns and their order (a feature a decision did not log
    is NaN); by default they are the logged names in order of first appearance.
    `presume_unlabelled_legit` adds decisions older than the label delay that got no feedback as
    label 0 with source "presumed_legit" (approved transactions nobody disputed in time).
    """
    if as_of is not None and as_of.tzinfo is None:
        raise ValidationError("as_of must be timezone-aware", field="as_of")
    if label_delay < timedelta(0):
        raise ValidationError(f"label_delay must be >= 0, got {label_delay}", field="label_delay")
    source = "given"
    feedback, decisions = list(feedback), list(decisions)
    if as_of is None:
        clock = EventClock()
        for record in decisions:
            clock.see(record.value)
        as_of, source = latest_moment(clock.newest, feedback, wall_clock)
    as_of = as_of.astimezone(UTC)
    now = (wall_clock or datetime.now(UTC)).astimezone(UTC)
    clamped = as_of > now
    as_of = min(as_of, now)
    cutoff = as_of - label_delay
    report = AssemblyReport(
        as_of=as_of.isoformat().replace("+00:00", "Z"),
        label_delay_days=label_delay / timedelta(days=1),
        as_of_source=source,
        as_of_clamped=clamped,
    )
    labelled = {tid for tid in map(_transaction_id_of, feedback) if tid is not None}
    wanted = None if presume_unlabelled_legit else labelled
    joined = first_decisions(decisions, wanted, report)
    winners = latest_labels(
        feedback,
        as_of,
        report,
        {tx: decision.event_time for tx, decision in joined.items()},
        chargeback_analysts,
    )

    rows: list[tuple[str, _Decision, int, str]] = []
    used: list[datetime] = []
    for transaction_id, label in winners.items():
        decision = joined.get(transaction_id)
        if decision is None:
            report.without_decision += 1
        elif decision.event_time > cutoff:
            report.too_recent += 1
        else:
            rows.append((transaction_id, decision, LABEL_VALUES[label.label], label.source))
            used.append(label.labelled_at)
    if presume_unlabelled_legit:
        for transaction_id, decision in joined.items():
            if transaction_id not in winners and decision.event_time <= cutoff:
                rows.append((transaction_id, decision, 0, PRESUMED_LEGIT))
                report.presumed_legit += 1
    rows.sort(key=lambda row: (row[1].event_time, row[0]))

    report.rows = len(rows)
    report.frauds = sum(row[2] for row in rows)
    for _, _, _, source in rows:
        report.by_source[source] = report.by_source.get(source, 0) + 1
    if used:
        report.labelled_at_min = min(used).isoformat().replace("+00:00", "Z")
        report.labelled_at_max = max(used).isoformat().replace("+00:00", "Z")
    return _frame(rows, feature_names), report


def _frame(
    rows: Sequence[tuple[str, _Decision, int, str]], feature_names: Sequence[str] | None
) -> pd.DataFrame:
    if feature_names is None:
        names: dict[str, None] = {}
        for _, decision, _, _ in rows:
            names.update(dict.fromkeys(decision.features))
        feature_names = list(names)
    clash = set(feature_names) & set(META_COLUMNS)
    if clash:
        raise ValidationError(f"feature names clash with the set's columns: {sorted(clash)}")
    columns: dict[str, Any] = {
        "transaction_id": pd.Series([row[0] for row in rows], dtype="string"),
        "event_time": pd.to_datetime([row[1].event_time for row in rows], utc=True),
        "model_version": pd.Series([row[1].model_version for row in rows], dtype="string"),
        "label": pd.Series([row[2] for row in rows], dtype="int8"),
        "source": pd.Series([row[3] for row in rows], dtype="string"),
    }
    for name in feature_names:
        values = [row[1].features.get(name) for row in rows]
        numeric = all(v is None or isinstance(v, int | float) for v in values)
        columns[name] = pd.Series(
            [float("nan") if v is None else v for v in values] if numeric else values,
            dtype="float64" if numeric else "object",
        )
    frame = pd.DataFrame(columns)
    frame.index = pd.RangeIndex(len(frame))
    return frame


# -- thin Kafka readers --------------------------------------------------------------------


def read_feedback(settings: Settings, *, timeout_s: float = 120.0) -> list[TopicRecord]:
    """Every record of the feedback topic up to its end offsets now (fresh consumer, no commits)."""
    return list(scan_topic(settings.kafka, settings.topics.feedback, timeout_s=timeout_s))


def read_decisions(
    settings: Settings,
    *,
    transaction_ids: set[str] | None = None,
    clock: EventClock | None = None,
    timeout_s: float = 300.0,
) -> list[TopicRecord]:
    """Every record of the decisions topic up to its end offsets now (fresh consumer, no commits);
    with `transaction_ids`, only the records that mention one of them (a bytes match, no parsing).
    `clock` is shown every record read, kept or not."""

    def mentions_wanted(value: bytes) -> bool:
        match = _TRANSACTION_ID.search(value)
        # No match: an escaped id or a broken record; keep it for the assembly to parse.
        return match is None or match.group(1).decode(errors="replace") in wanted_ids

    def where(value: bytes) -> bool:
        if clock is not None:
            clock.see(value)
        return transaction_ids is None or mentions_wanted(value)

    wanted_ids = transaction_ids or set()
    return list(
        scan_topic(
            settings.kafka,
            settings.topics.decisions,
            where=None if transaction_ids is None and clock is None else where,
            timeout_s=timeout_s,
        )
    )


def _transaction_id_of(record: TopicRecord) -> str | None:
    match = _TRANSACTION_ID.search(record.value)
    if match is not None:
        return match.group(1).decode(errors="replace")
    try:  # escaped characters defeat the byte match: parse
        parsed = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        return None
    found = parsed.get("transaction_id") if isinstance(parsed, dict) else None
    return found if isinstance(found, str) else None


def load_labelled_set(
    settings: Settings,
    *,
    as_of: datetime | None = None,
    label_delay: timedelta | None = None,
    feature_names: Sequence[str] | None = None,
    presume_unlabelled_legit: bool = False,
) -> tuple[pd.DataFrame, AssemblyReport]:
    """Read both topics from Kafka and assemble (defaults: as of the latest moment the topics
    show, see the module docstring; settings.label_delay_days)."""
    feedback = read_feedback(settings)
    wanted: set[str] | None = None
    if not presume_unlabelled_legit:
        wanted = {tid for tid in map(_transaction_id_of, feedback) if tid is not None}
    # Only the labelled transactions' decisions are kept, but the stream's "now" is the newest
    # of all of them.
    clock = EventClock()
    decisions = read_decisions(settings, transaction_ids=wanted, clock=clock)
    if label_delay is None:
        label_delay = timedelta(days=settings.label_delay_days)
    source = "given"
    if as_of is None:
        as_of, source = latest_moment(clock.newest, feedback)
    frame, report = assemble_labelled_set(
        feedback,
        decisions,
        as_of=as_of,
        label_delay=label_delay,
        feature_names=feature_names,
        presume_unlabelled_legit=presume_unlabelled_legit,
        chargeback_analysts=settings.chargeback_analysts,
    )
    report.as_of_source = source
    return frame, report
