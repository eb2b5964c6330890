"""Simulated fraud analysts: alerts in, labels (and chargebacks) out on `feedback`.

    desk = AnalystDesk(AnalystConfig(review_delay_s=2, chargeback_delay_s=5, error_rate=0.05))
    desk.add_truth(truth_record, now); desk.add_alert(alert, now); desk.add_decision(decision, now)
    feedback_records = desk.due(now)

The desk is pure: the caller passes the time and may inject the random draws. Its rules:
- an alert is labelled `review_delay_s` after its transaction's event_time, from the simulator's
  ground truth (`transactions.truth`), with probability `error_rate` of the wrong label;
- at most `daily_capacity` labels per day (days of `day_s` seconds, counted by the day the review
  falls due); alerts beyond it are dropped, never labelled;
- an approved fraud comes back as a chargeback (label fraud, source chargeback) `chargeback_delay_s`
  after its event_time, so recall can be measured from feedback alone;
- an alert or approval whose ground truth has not arrived within `truth_wait_s` of the caller's
  time is given up (arrival, on the caller's clock).

Due times are on the transactions' clock (event time + delay) and records are stamped
`labelled_at` = their due time, not the moment they are sent: the same inputs give the same
feedback however often the loop polls, and labelled_at compares with event times downstream (the
worker counts a label in its terminal features from labelled_at on; retraining keeps the labels
labelled by its as-of, an event time). Simulated traffic runs on its own clock (simulator.live),
usually behind the wall clock, so a label is released once its due time has passed on the
caller's clock or on the newest event time the desk has seen, whichever is later: for simulated
traffic in the wall clock's past, as soon as alert and truth have met; when it runs ahead, as
the simulated time moves on. `run_analyst` is the thin Kafka loop behind `fraud analyst`.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, Message, TopicPartition

from fraud.errors import ConfigError, FraudScorerError
from fraud.settings import Settings
from fraud.times import epoch_seconds
from schemas import validator
from stream.feedback import CHARGEBACK_ANALYST, build_label, partitions_of
from stream.kafka_io import make_consumer, make_producer

log = logging.getLogger(__name__)

Draw = Callable[[str, str], float]  # (transaction_id, purpose) -> uniform in [0, 1)
DAY_S = 86_400.0


@dataclass(frozen=True)
class AnalystConfig:
    """How the simulated team behaves; all times in seconds (compress them for demos and tests)."""

    review_delay_s: float = 4 * 3600.0
    error_rate: float = 0.02
    daily_capacity: int | None = 500  # None: unlimited
    chargeback_delay_s: float = 3 * DAY_S
    day_s: float = DAY_S
    truth_wait_s: float = 3600.0
    analysts: tuple[str, ...] = ("analyst-01", "analyst-02", "analyst-03")
    seed: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.review_delay_s < 0 or self.chargeback_delay_s < 0:
            problems.append("delays must be >= 0")
        if not 0.0 <= self.error_rate <= 1.0:
            problems.append(f"error rate must be within [0, 1], got {self.error_rate}")
        if self.daily_capacity is not None and self.daily_capacity < 0:
            problems.append(f"daily capacity must be >= 0, got {self.daily_capacity}")
        if self.day_s <= 0 or self.truth_wait_s <= 0:
            problems.append("day length and truth wait must be > 0")
        if not self.analysts or CHARGEBACK_ANALYST in self.analysts:
            problems.append(f"need at least one analyst id other than {CHARGEBACK_ANALYST!r}")
        if problems:
            raise ConfigError("analyst settings: " + "; ".join(problems))


@dataclass
class AnalystSummary:
    alerts: int = 0
    duplicate_alerts: int = 0
    labelled: int = 0
    errors_injected: int = 0
    capacity_dropped: int = 0
    chargebacks: int = 0
    without_truth: int = 0
    truth_unmatched: int = 0
    invalid: int = 0
    pending: int = 0  # scheduled, not yet due
    waiting_for_truth: int = 0
    delivery_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def seeded_draw(seed: int) -> Draw:
    """Uniform draws fixed by (seed, transaction, purpose): arrival order does not matter."""

    def draw(transaction_id: str, purpose: str) -> float:
        digest = hashlib.blake2b(f"{seed}:{purpose}:{transaction_id}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big") / 2**64

    return draw


def review_due_at(alert: Mapping[str, Any], config: AnalystConfig) -> float:
    return epoch_seconds(alert["event_time"]) + config.review_delay_s


def chargeback_due_at(decision: Mapping[str, Any], config: AnalystConfig) -> float:
    return epoch_seconds(decision["event_time"]) + config.chargeback_delay_s


def observed_label(is_fraud: bool, error_rate: float, draw: float) -> tuple[str, bool]:
    """The label an analyst gives, and whether it is wrong (draw < error_rate flips it)."""
    wrong = draw < error_rate
    return ("fraud" if is_fraud != wrong else "legit"), wrong


@dataclass(order=True)
class _Due:
    due_at: float
    sequence: int
    transaction_id: str = field(compare=False)
    is_fraud: bool = field(compare=False)
    chargeback: bool = field(compare=False)


class AnalystDesk:
    """Joins alerts, decisions and ground truth; hands out feedback records as they fall due."""

    def __init__(self, config: AnalystConfig, draw: Draw | None = None) -> None:
        self.config = config
        self.draw = draw or seeded_draw(config.seed)
        self.summary = AnalystSummary()
        self._queue: list[_Due] = []
        self._sequence = 0
        # transaction_id -> (is_fraud | due_at, seen_at); insertion order = arrival order, so the
        # oldest entries are at the front and expire first.
        self._truth: OrderedDict[str, tuple[bool, float]] = OrderedDict()
        self._alerts_waiting: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._approved_waiting: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._alerted: set[str] = set()
        self._charged: set[str] = set()
        self._used_per_day: dict[int, int] = {}
        self.newest_event_time: float | None = None  # of the alerts and decisions seen

    def _saw_event_time(self, timestamp: str) -> None:
        seconds = epoch_seconds(timestamp)
        if self.newest_event_time is None or seconds > self.newest_event_time:
            self.newest_event_time = seconds

    def add_truth(self, record: Mapping[str, Any], now: float) -> None:
        transaction_id, is_fraud = str(record["transaction_id"]), bool(record["is_fraud"])
        if transaction_id in self._alerts_waiting:
            due_at, _ = self._alerts_waiting.pop(transaction_id)
            self._schedule(due_at, transaction_id, is_fraud, chargeback=False)
        elif transaction_id in self._approved_waiting:
            due_at, _ = self._approved_waiting.pop(transaction_id)
            if is_fraud:
                self._schedule(due_at, transaction_id, True, chargeback=True)
        else:
            self._truth[transaction_id] = (is_fraud, now)

    def add_alert(self, alert: Mapping[str, Any], now: float) -> None:
        transaction_id = str(alert["transaction_id"])
        self._saw_event_time(alert["event_time"])
        if transaction_id in self._alerted:
            self.summary.duplicate_alerts += 1
            return
        self._alerted.add(transaction_id)
        self.summary.alerts += 1
        due_at = review_due_at(alert, self.config)
        truth = self._truth.pop(transaction_id, None)
        if truth is None:
            self._alerts_waiting[transaction_id] = (due_at, now)
        else:
            self._schedule(due_at, transaction_id, truth[0], chargeback=False)

    def add_decision(self, decision: Mapping[str, Any], now: float) -> None:
        """Only approvals matter here: review and decline reach the analysts as alerts."""
        transaction_id = str(decision["transaction_id"])
        self._saw_event_time(decision["event_time"])
        if decision["decision"] != "approve" or transaction_id in self._charged:
            return
        due_at = chargeback_due_at(decision, self.config)
        truth = self._truth.pop(transaction_id, None)
        if truth is None:
            self._approved_waiting[transaction_id] = (due_at, now)
        elif truth[0]:
            self._schedule(due_at, transaction_id, True, chargeback=True)

    def due(self, now: float) -> list[dict[str, Any]]:
        """Feedback records that fell due by `now` or by the newest event time seen (whichever
        is later), in due order; gives up on stale waits."""
        self._expire(now)
        released_to = max(now, self.newest_event_time or now)
        records = []
        while self._queue and self._queue[0].due_at <= released_to:
            item = heapq.heappop(self._queue)
            record = self._chargeback(item) if item.chargeback else self._review(item)
            if record is not None:
                records.append(record)
        self.summary.pending = len(self._queue)
        self.summary.waiting_for_truth = len(self._alerts_waiting) + len(self._approved_waiting)
        return records

    def _schedule(
        self, due_at: float, transaction_id: str, is_fraud: bool, chargeback: bool
    ) -> None:
        if chargeback:
            self._charged.add(transaction_id)
        self._sequence += 1
        heapq.heappush(
            self._queue, _Due(due_at, self._sequence, transaction_id, is_fraud, chargeback)
        )

    def _review(self, item: _Due) -> dict[str, Any] | None:
        capacity = self.config.daily_capacity
        day = int(item.due_at // self.config.day_s)
        if capacity is not None and self._used_per_day.get(day, 0) >= capacity:
            self.summary.capacity_dropped += 1
            return None
        self._used_per_day[day] = self._used_per_day.get(day, 0) + 1
        label, wrong = observed_label(
            item.is_fraud, self.config.error_rate, self.draw(item.transaction_id, "error")
        )
        analysts = self.config.analysts
        pick = min(
            len(analysts) - 1, int(self.draw(item.transaction_id, "analyst") * len(analysts))
        )
        self.summary.labelled += 1
        self.summary.errors_injected += wrong
        return build_label(
            item.transaction_id,
            label,
            analysts[pick],
            labelled_at=datetime.fromtimestamp(item.due_at, UTC),
        )

    def _chargeback(self, item: _Due) -> dict[str, Any]:
        self.summary.chargebacks += 1
        return build_label(
            item.transaction_id,
            "fraud",
            CHARGEBACK_ANALYST,
            labelled_at=datetime.fromtimestamp(item.due_at, UTC),
            source="chargeback",
        )

    def _expire(self, now: float) -> None:
        oldest = now - self.config.truth_wait_s
        for waiting in (self._alerts_waiting, self._approved_waiting):
            while waiting and next(iter(waiting.values()))[1] < oldest:
                waiting.popitem(last=False)
                self.summary.without_truth += 1
        while self._truth and next(iter(self._truth.values()))[1] < oldest:
            self._truth.popitem(last=False)
            self.summary.truth_unmatched += 1


# -- the Kafka loop ---------------------------------------------------------------------------


class _Router:
    """Raw records of the three input topics -> the desk; anything unreadable is counted."""

    def __init__(self, settings: Settings, desk: AnalystDesk) -> None:
        topics = settings.topics
        self.desk = desk
        self.alerts, self.truth, self.decisions = topics.alerts, topics.truth, topics.decisions
        self._alert = validator("alert")
        self._decision = validator("decision")

    def route(self, message: Message, now: float) -> None:
        topic, value = message.topic(), message.value() or b""
        # Review/decline decisions reach the desk as alerts: skip them before parsing.
        if topic == self.decisions and b'"approve"' not in value:
            return
        try:
            record = orjson.loads(value)
            if topic == self.alerts:
                self.desk.add_alert(self._alert(record), now)
            elif topic == self.decisions:
                self.desk.add_decision(self._decision(record), now)
            elif topic == self.truth:
                tid, is_fraud = record.get("transaction_id"), record.get("is_fraud")
                # The simulator writes is_fraud as 0/1 (the history's column type).
                if not isinstance(tid, str) or is_fraud not in (0, 1):
                    raise ValueError("truth needs transaction_id (string) and is_fraud (0/1)")
                self.desk.add_truth(record, now)
        except (orjson.JSONDecodeError, FraudScorerError, ValueError, AttributeError) as exc:
            self.desk.summary.invalid += 1
            log.debug("skipping a record of %s: %s", topic, exc)


def run_analyst(
    settings: Settings,
    config: AnalystConfig,
    *,
    duration_s: float | None = None,
    from_beginning: bool = False,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.time,
    on_feedback: Callable[[Mapping[str, Any]], None] | None = None,
    report_every_s: float = 30.0,
) -> AnalystSummary:
    """Consume alerts, decisions and truth; publish labels and chargebacks to feedback.

    Reads from the end of the topics (what arrives from now on) or, with `from_beginning`, from
    their first records; nothing is committed, so each run starts where it is told to. Ends after
    `duration_s`, when `stop` is set, or on KeyboardInterrupt; labels not yet due are not sent.
    """
    topics = settings.topics
    inputs: Sequence[str] = (topics.alerts, topics.truth, topics.decisions)
    consumer = make_consumer(
        settings.kafka,
        f"{settings.consumer_group}.analyst-{time.monotonic_ns():x}",
        {"enable.auto.commit": False, "enable.auto.offset.store": False, "fetch.wait.max.ms": 100},
    )
    producer = None
    desk = AnalystDesk(config)
    try:
        partitions = partitions_of(consumer, [*inputs, topics.feedback], timeout_s=10.0)
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign(
            [TopicPartition(t, p, start) for t, p in partitions if t != topics.feedback]
        )
        producer = make_producer(settings.kafka)
        router = _Router(settings, desk)

        def delivered(err: KafkaError | None, _message: Message) -> None:
            if err is not None:
                desk.summary.delivery_errors += 1
                log.error("feedback delivery failed: %s", err)

        began = last_report = time.monotonic()
        while not (stop is not None and stop.is_set()):
            if duration_s is not None and time.monotonic() - began >= duration_s:
                break
            for message in consumer.consume(1000, timeout=0.2):
                if message.error() is None:
                    router.route(message, clock())
            for record in desk.due(clock()):
                producer.produce(
                    topics.feedback,
                    orjson.dumps(record),
                    record["transaction_id"].encode(),
                    on_delivery=delivered,
                )
                if on_feedback is not None:
                    on_feedback(record)
            producer.poll(0)
            if time.monotonic() - last_report >= report_every_s:
                last_report = time.monotonic()
                log.info("analyst desk: %s", desk.summary.as_dict())
    except KeyboardInterrupt:
        log.info("interrupted; flushing feedback")
    finally:
        if producer is not None:
            desk.summary.delivery_errors += producer.flush(30)
        consumer.close()
    return desk.summary
