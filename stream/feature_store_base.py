"""The batch logic both feature stores share; they differ only in where the state lives.

Per batch: encode the events, read the state of all their cards and terminals, compute the
features of events never seen before with `stream.features.batch_features` (the definition the
training replay uses), write the new state. Each processed transaction leaves a record (time,
terminal, features) that expires with the state: a replayed event gets its recorded features
back and is not counted again, and `apply_labels` finds the transaction's terminal and time in it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from fraud.errors import ValidationError
from stream.feature_encoding import FloatArray, IntArray, columns_from_events, timestamp_us
from stream.features import (
    DAY_US,
    TERMINAL_LOOKBACK_US,
    BatchResult,
    EventColumns,
    TerminalFrauds,
    batch_features,
    feature_dicts,
    features_without_history,
)

STATE_VERSION = 1  # bump when the layout of stored state changes; old keys then expire unused
STATE_TTL = timedelta(days=31)  # longest window (30 d) + a day for late events and labels
TERMINAL_RETENTION_US = TERMINAL_LOOKBACK_US + DAY_US
LABELS = {"fraud": 1, "legit": 0}

Features = dict[str, float | None]
LabelEntry = tuple[int, int, int]  # (transaction time, labelled_at, 1 fraud / 0 legit)


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


@dataclass
class StoredState:
    """What a store read for a batch; the rows of terminal_counts follow the rows read."""

    known: dict[str, FloatArray]  # transaction_id -> recorded features
    card_history: dict[str, bytes]  # packed CARD_EVENT_DTYPE rows
    terminal_counts: FloatArray  # stored transactions per TERMINAL_WINDOWS window
    terminal_labels: dict[str, dict[str, LabelEntry]]  # terminal -> transaction -> label


class FeatureStore(ABC):
    """The interface of InMemoryFeatureStore and RedisFeatureStore."""

    def process_batch(self, events: Sequence[Mapping[str, Any]]) -> list[Features]:
        """Features of each event in order, from strictly earlier events; then update the state.

        Idempotent per transaction_id: an event seen before (in this or an earlier batch) gets
        its recorded features back and is not counted again.
        """
        if not events:
            return []
        columns = columns_from_events(events)
        _check_card_ids(columns)
        first_row: dict[str, int] = {}
        for row, transaction_id in enumerate(columns.transaction_id):
            first_row.setdefault(transaction_id, row)
        rows = np.fromiter(first_row.values(), dtype=np.int64, count=len(first_row))
        state = self._read(columns, rows)
        is_new = np.array([tx not in state.known for tx in first_row])
        result = None
        if is_new.any():
            result = batch_features(
                columns,
                rows[is_new],
                state.card_history,
                state.terminal_counts[is_new],
                _frauds_by_terminal(state.terminal_labels),
            )
            self._write(columns, rows[is_new], result, state)
        if result is not None and len(rows) == len(columns) and is_new.all():
            return feature_dicts(result.features)
        by_transaction = dict(state.known)
        if result is not None:
            new_ids = [columns.transaction_id[row] for row in rows[is_new].tolist()]
            by_transaction.update(zip(new_ids, result.features, strict=True))
        return feature_dicts(np.stack([by_transaction[tx] for tx in columns.transaction_id]))

    def apply_labels(self, labels: Sequence[Mapping[str, Any]]) -> int:
        """Record confirmed labels for the terminal fraud-rate features.

        A label counts from its labelled_at on. Per transaction the latest label wins; labels of
        unknown (or expired) transactions are ignored. Returns how many labels are now in effect.
        """
        parsed = parse_labels(labels)
        return self._write_labels(list(parsed.values())) if parsed else 0

    def default_features(self, event: Mapping[str, Any]) -> Features:
        """Features with no history (degraded mode); needs no state."""
        return features_without_history(event)

    @abstractmethod
    def _read(self, columns: EventColumns, rows: IntArray) -> StoredState: ...

    @abstractmethod
    def _write(
        self, columns: EventColumns, rows: IntArray, result: BatchResult, state: StoredState
    ) -> None: ...

    @abstractmethod
    def _write_labels(self, labels: list[ParsedLabel]) -> int: ...


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


def terminal_cutoffs(columns: EventColumns, rows: IntArray) -> dict[str, int]:
    """Per terminal of the batch: transactions before this time are past every window."""
    newest: dict[str, int] = {}
    for row, ts in zip(rows.tolist(), columns.ts[rows].tolist(), strict=True):
        terminal = columns.terminal_id[row]
        newest[terminal] = max(ts, newest.get(terminal, ts))
    return {terminal: ts - TERMINAL_RETENTION_US for terminal, ts in newest.items()}
