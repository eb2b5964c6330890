"""The batch logic both feature stores share; they differ only in where the state lives.

Per batch: encode the events, read the state of all their cards and terminals, compute the
features of events never seen before with `stream.features.definition.batch_features` (the
definition the training replay uses), write the new state. Each processed transaction leaves a
record (time, terminal, features, a digest of its content) that expires with the state: a
redelivered event (same id, same content) gets its recorded features back and is not counted
again; the same id with other content is a conflict (`BatchFeatures.conflicts`), never a second
transaction and never the first one's features; `apply_labels` finds the transaction's terminal
and time in the record, and refuses a label dated before its transaction.

A store computes the terminal features after a label delay (see stream/features/definition.py), so it is
built with the label delay of the training run behind the model it serves, and keeps each
terminal's transactions, labels and transaction records for that delay + the longest terminal
window + a day (`state_ttl`), at least as long as the 30-day card lookback + a day.
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import Any

import numpy as np
import orjson

from fraud.errors import ConfigError, ValidationError
from fraud.settings import Settings
from stream.features.definition import (
    CARD_LOOKBACK_US,
    DAY_US,
    FEATURE_NAMES,
    TERMINAL_LOOKBACK_US,
    BatchResult,
    EventColumns,
    TerminalFrauds,
    batch_features,
    feature_dicts,
    terminal_count_offsets,
    vector_without_history,
)
from stream.features.encoding import FloatArray, IntArray, columns_from_events, timestamp_us

# v2: transaction records hold the after-delay terminal features (9 terminal columns, not 6).
# v3: transaction records hold a digest of the transaction's content.
# v4: keys hash-tagged into shards (Redis Cluster); card states carry a version.
# v5: card events keep their channel and merchant category group; records hold the habit features.
STATE_VERSION = 5  # bump when the layout of stored state changes; old keys then expire unused
# The delay training assumes when nothing else is said: Settings' default, one source of truth.
DEFAULT_LABEL_DELAY = timedelta(days=Settings.model_fields["label_delay_days"].default)
_ONE_US = timedelta(microseconds=1)
LABELS = {"fraud": 1, "legit": 0}

Features = dict[str, float | None]
LabelEntry = tuple[int, int, int]  # (transaction time, labelled_at, 1 fraud / 0 legit)


DIGEST_BYTES = 16


def event_digest(event: Mapping[str, Any]) -> bytes:
    """A digest of a transaction's content (keys sorted): equal for a redelivery of the same
    record, different for another transaction reusing its id."""
    canonical = orjson.dumps(event, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.blake2b(canonical, digest_size=DIGEST_BYTES).digest()


@dataclass
class BatchFeatures:
    """Features per event, in order (one matrix row each, FEATURE_NAMES columns, NaN for
    missing), and the rows whose transaction id was already taken by other content (their
    features are the defaults; the caller refuses them)."""

    matrix: FloatArray
    conflicts: list[int]

    @cached_property
    def features(self) -> list[dict[str, float | None]]:
        """The rows as dicts (FEATURE_NAMES keys, None for missing)."""
        return feature_dicts(self.matrix)


class StaleStateError(Exception):
    """A write found cards that moved on since they were read (another worker wrote them):
    none of those card shards was written (the idempotent terminal members were); read and
    compute the batch again."""

    def __init__(self, cards: list[str]) -> None:
        super().__init__(f"{len(cards)} card states moved on since they were read")
        self.cards = cards


@dataclass(frozen=True)
class LabelResult:
    """What `apply_labels_checked` did: labels now in effect, and labels refused for being dated
    before their transaction."""

    applied: int
    dated_before_transaction: list[str]


@dataclass(frozen=True)
class ParsedLabel:
    transaction_id: str
    labelled_at: int
    is_fraud: int


def parse_labels(labels: Sequence[Mapping[str, Any]]) -> dict[str, ParsedLabel]:
    """Feedback records -> the latest label of each transaction (by labelled_at, then order)."""
    latest: dict[str, ParsedLabel] = {}
    for index, label in enumerate(labels):
        try:
            parsed = ParsedLabel(
                str(label["transaction_id"]),
                timestamp_us(label["labelled_at"]),
                LABELS[label["label"]],
            )
        except KeyError as exc:
            raise ValidationError(
                f"label {index}: missing field or unknown label {exc.args[0]!r} "
                f"(labels are {sorted(LABELS)})",
                field=str(exc.args[0]),
                rule="required",
            ) from None
        current = latest.get(parsed.transaction_id)
        if current is None or parsed.labelled_at >= current.labelled_at:
            latest[parsed.transaction_id] = parsed
    return latest


def checked_label_delay(label_delay: timedelta) -> timedelta:
    """`label_delay` if it is a non-negative timedelta, else ConfigError."""
    if not isinstance(label_delay, timedelta) or label_delay < timedelta(0):
        raise ConfigError(
            f"label_delay must be a non-negative timedelta (e.g. "
            f"timedelta(days=settings.label_delay_days)), got {label_delay!r}"
        )
    return label_delay


def terminal_retention_us(label_delay: timedelta) -> int:
    """How far back of its newest transaction a terminal's state reaches: the label delay, the
    longest terminal window, and a day for late events."""
    return checked_label_delay(label_delay) // _ONE_US + TERMINAL_LOOKBACK_US + DAY_US


def state_ttl(label_delay: timedelta = DEFAULT_LABEL_DELAY) -> timedelta:
    """How long stored state must live: the terminal retention, and at least the card lookback
    + a day. Transaction records live as long, since a label may matter until its transaction
    leaves the longest after-delay window."""
    longest_us = max(terminal_retention_us(label_delay), CARD_LOOKBACK_US + DAY_US)
    return timedelta(seconds=math.ceil(longest_us / 1_000_000))


@dataclass
class StoredState:
    """What a store read for a batch; the rows of terminal_counts follow the rows read."""

    known: dict[str, FloatArray]  # transaction_id -> recorded features
    known_digest: dict[str, bytes]  # transaction_id -> digest of the recorded content
    card_history: dict[str, bytes]  # packed CARD_EVENT_DTYPE rows
    terminal_counts: FloatArray  # stored transactions per `terminal_count_offsets` window
    terminal_labels: dict[str, dict[str, LabelEntry]]  # terminal -> transaction -> label
    # The version each card state was read at (stores that check it before writing).
    versions: dict[str, bytes] = field(default_factory=dict)
    # Rows each card state holds, dropped ones included (stores that append to states).
    stored_rows: dict[str, int] = field(default_factory=dict)


class FeatureStore(ABC):
    """The interface of InMemoryFeatureStore and RedisFeatureStore.

    `label_delay` is part of the feature definition: pass the one the model was trained with.
    """

    def __init__(self, label_delay: timedelta = DEFAULT_LABEL_DELAY) -> None:
        self._label_delay = checked_label_delay(label_delay)
        self._label_delay_us = label_delay // _ONE_US
        self._count_offsets = terminal_count_offsets(self._label_delay_us)
        self._retention_us = terminal_retention_us(label_delay)

    @property
    def label_delay(self) -> timedelta:
        """The delay before which terminal fraud-rate windows end (see stream/features/definition.py)."""
        return self._label_delay

    def process_batch(self, events: Sequence[Mapping[str, Any]]) -> list[Features]:
        """Features of each event in order, from strictly earlier events; then update the state.

        Idempotent per transaction_id: an event seen before (in this or an earlier batch) gets
        its recorded features back and is not counted again. (`process` also reports ids reused
        by other content.)
        """
        return self.process(events).features

    def process(self, events: Sequence[Mapping[str, Any]], *, write: bool = True) -> BatchFeatures:
        """`process_batch`, reporting conflicts; with `write=False` nothing is stored (a
        read-only look, for `POST /predict`)."""
        if not events:
            return BatchFeatures(np.empty((0, len(FEATURE_NAMES))), [])
        columns = columns_from_events(events)
        _check_card_ids(columns)
        digests = [event_digest(event) for event in events]
        first_row: dict[str, int] = {}
        for row, transaction_id in enumerate(columns.transaction_id):
            first_row.setdefault(transaction_id, row)
        rows = np.fromiter(first_row.values(), dtype=np.int64, count=len(first_row))
        for attempt in range(1, self.max_attempts + 1):
            state = self._read(columns, rows, write)
            # An id's content is the recorded one, or else its first occurrence in this batch.
            conflicts = [
                row
                for row, transaction_id in enumerate(columns.transaction_id)
                if digests[row]
                != state.known_digest.get(transaction_id, digests[first_row[transaction_id]])
            ]
            is_new = np.array([tx not in state.known for tx in first_row])
            result = None
            if is_new.any():
                result = batch_features(
                    columns,
                    rows[is_new],
                    state.card_history,
                    state.terminal_counts[is_new],
                    _frauds_by_terminal(state.terminal_labels),
                    label_delay_us=self._label_delay_us,
                )
            if not write:
                break
            refused = set(conflicts)
            kept = np.array([r for r in rows.tolist() if r not in refused], dtype=np.int64)
            new_rows = rows[is_new]
            try:
                self._write(
                    columns, new_rows, result, state, [digests[r] for r in new_rows.tolist()], kept
                )
            except StaleStateError:
                if attempt == self.max_attempts:
                    raise
                continue  # another worker wrote these cards: read and compute again
            break
        if not conflicts and result is not None and len(rows) == len(columns) and is_new.all():
            return BatchFeatures(result.features, [])
        by_transaction = dict(state.known)
        if result is not None:
            new_ids = [columns.transaction_id[row] for row in rows[is_new].tolist()]
            by_transaction.update(zip(new_ids, result.features, strict=True))
        matrix = np.stack([by_transaction[tx] for tx in columns.transaction_id])
        for row in conflicts:
            matrix[row] = vector_without_history(events[row])
        return BatchFeatures(matrix, conflicts)

    max_attempts = 5  # reads and computes of one batch while other workers write its cards

    def apply_labels(self, labels: Sequence[Mapping[str, Any]]) -> int:
        """Record confirmed labels for the terminal fraud-rate features.

        A label counts from its labelled_at on, and only in windows that end the label delay
        before the scored transaction (so a label arriving sooner than the delay changes no
        feature before training would know it too). Per transaction the latest label wins;
        labels of unknown (or expired) transactions are ignored. Returns how many labels are
        now in effect.
        """
        return self.apply_labels_checked(labels).applied

    def apply_labels_checked(self, labels: Sequence[Mapping[str, Any]]) -> LabelResult:
        """`apply_labels`, also naming the labels refused for being dated before their
        transaction (a verdict cannot precede what it judges)."""
        parsed = parse_labels(labels)
        if not parsed:
            return LabelResult(0, [])
        return self._write_labels(list(parsed.values()))

    def default_matrix(self, events: Sequence[Mapping[str, Any]]) -> FloatArray:
        """Features with no history (degraded mode), a row per event as `process` gives them;
        needs no state."""
        return np.stack([vector_without_history(event) for event in events])

    @abstractmethod
    def _read(self, columns: EventColumns, rows: IntArray, write: bool) -> StoredState:
        """The batch's state; `write`: the state is read to be written back (a store may then
        use what it wrote itself, since the write checks it), else for a look only."""

    @abstractmethod
    def _write(
        self,
        columns: EventColumns,
        rows: IntArray,
        result: BatchResult | None,
        state: StoredState,
        digests: list[bytes],
        kept: IntArray,
    ) -> None:
        """Store `result`, the state of the new events `rows` (None: the batch has none), and
        whatever every event of the batch but its conflicts (`kept`, redelivered ones included)
        adds idempotently (the Redis store's terminal members). StaleStateError when cards moved
        on since `state` was read."""

    @abstractmethod
    def _write_labels(self, labels: list[ParsedLabel]) -> LabelResult: ...


def _check_card_ids(columns: EventColumns) -> None:
    for card in columns.card_id:
        if card.isdigit() and 12 <= len(card) <= 19:
            raise ValidationError(
                "card_id looks like a card number; only tokens may reach the feature store",
                field="card_id",
                rule="token",
            )


def _frauds_by_terminal(
    labels: Mapping[str, Mapping[str, LabelEntry]],
) -> dict[str, TerminalFrauds]:
    frauds: dict[str, TerminalFrauds] = {}
    for terminal, entries in labels.items():
        confirmed = sorted((ts, known) for ts, known, flag in entries.values() if flag == 1)
        if confirmed:
            array = np.array(confirmed, dtype=np.int64).reshape(-1, 2)
            frauds[terminal] = TerminalFrauds(array[:, 0].copy(), array[:, 1].copy())
    return frauds


def terminal_cutoffs(columns: EventColumns, rows: IntArray, retention_us: int) -> dict[str, int]:
    """Per terminal of the batch: transactions before this time are past every window
    (`retention_us` before its newest transaction, see terminal_retention_us)."""
    newest: dict[str, int] = {}
    for row, ts in zip(rows.tolist(), columns.ts[rows].tolist(), strict=True):
        terminal = columns.terminal_id[row]
        newest[terminal] = max(ts, newest.get(terminal, ts))
    return {terminal: ts - retention_us for terminal, ts in newest.items()}
