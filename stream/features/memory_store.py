"""`InMemoryFeatureStore`: the feature state in this process (tests, the training replay's
store path, benchmarks). Same batch logic as the Redis store (`stream.features.store`)."""

from __future__ import annotations

import bisect
import struct
from collections import deque
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import numpy as np

from stream.features.definition import (
    CARD_EVENT_DTYPE,
    BatchResult,
    EventColumns,
    features_without_history,
)
from stream.features.encoding import FloatArray, IntArray
from stream.features.store import (
    DEFAULT_LABEL_DELAY,
    Features,
    FeatureStore,
    LabelEntry,
    LabelResult,
    ParsedLabel,
    StoredState,
    state_ttl,
    terminal_cutoffs,
)

_LAST_TS = struct.Struct("<q")  # ts is the first field of a CARD_EVENT_DTYPE row


def default_features(event: Mapping[str, Any]) -> Features:
    """Features with no card or terminal history: what the scorer uses when Redis is down."""
    return features_without_history(event)


class InMemoryFeatureStore(FeatureStore):
    """State in process memory, with the results of RedisFeatureStore; for tests and tools.

    Expiry follows event time (the only clock of a replay): what Redis would have expired after
    `state_ttl(label_delay)` is dropped here too.
    """

    def __init__(self, *, label_delay: timedelta = DEFAULT_LABEL_DELAY) -> None:
        super().__init__(label_delay)
        self._ttl_us = state_ttl(label_delay) // timedelta(microseconds=1)
        self._transactions: dict[str, tuple[int, str, FloatArray, bytes]] = {}
        self._expiry: deque[tuple[int, str]] = deque()
        self._cards: dict[str, bytes] = {}
        self._terminal_times: dict[str, list[int]] = {}
        self._labels: dict[str, dict[str, LabelEntry]] = {}
        self._newest = np.iinfo(np.int64).min
        self._writes_since_sweep = 0

    def _read(self, columns: EventColumns, rows: IntArray, write: bool = True) -> StoredState:
        row_list = rows.tolist()
        known, known_digest = {}, {}
        for row in row_list:
            record = self._transactions.get(columns.transaction_id[row])
            if record is not None:
                known[columns.transaction_id[row]] = record[2]
                known_digest[columns.transaction_id[row]] = record[3]
        offsets = self._count_offsets
        no_history = [0] * len(offsets)
        counts: list[list[int]] = []
        for row, t in zip(row_list, columns.ts[rows].tolist(), strict=True):
            times = self._terminal_times.get(columns.terminal_id[row])
            if not times:
                counts.append(no_history)
                continue
            row_counts = []
            high, high_end = 0, -1
            for start, end in offsets:
                if end != high_end:  # windows sharing an end share its search
                    high, high_end = bisect.bisect_left(times, t - end), end
                row_counts.append(high - bisect.bisect_left(times, t - start, 0, high))
            counts.append(row_counts)
        cards = {columns.card_id[row] for row in row_list}
        terminals = {columns.terminal_id[row] for row in row_list}
        return StoredState(
            known=known,
            known_digest=known_digest,
            card_history={card: self._cards[card] for card in cards if card in self._cards},
            terminal_counts=np.array(counts, dtype=np.float64).reshape(len(row_list), len(offsets)),
            terminal_labels={t: self._labels[t] for t in terminals if t in self._labels},
        )

    def _write(
        self,
        columns: EventColumns,
        rows: IntArray,
        result: BatchResult | None,
        state: StoredState,
        digests: list[bytes],
        kept: IntArray,
    ) -> None:
        if result is None:
            return
        self._cards.update(result.card_history)
        for row, ts, vector, digest in zip(
            rows.tolist(), columns.ts[rows].tolist(), result.features, digests, strict=True
        ):
            transaction_id, terminal = columns.transaction_id[row], columns.terminal_id[row]
            self._transactions[transaction_id] = (ts, terminal, vector, digest)
            self._expiry.append((ts, transaction_id))
            self._newest = max(self._newest, ts)
            bisect.insort(self._terminal_times.setdefault(terminal, []), ts)
        for terminal, cutoff in terminal_cutoffs(columns, rows, self._retention_us).items():
            times = self._terminal_times[terminal]
            del times[: bisect.bisect_left(times, cutoff)]
            entries = self._labels.get(terminal, {})
            for transaction_id in [tx for tx, entry in entries.items() if entry[0] < cutoff]:
                del entries[transaction_id]
        self._expire(len(rows))

    def _expire(self, written: int) -> None:
        cutoff = self._newest - self._ttl_us
        while self._expiry and self._expiry[0][0] < cutoff:
            _, transaction_id = self._expiry.popleft()
            self._transactions.pop(transaction_id, None)
        self._writes_since_sweep += written
        if self._writes_since_sweep > max(100_000, len(self._cards)):
            self._writes_since_sweep = 0
            size = CARD_EVENT_DTYPE.itemsize
            self._cards = {
                card: blob
                for card, blob in self._cards.items()
                if blob and _LAST_TS.unpack_from(blob, len(blob) - size)[0] >= cutoff
            }

    def _write_labels(self, labels: list[ParsedLabel]) -> LabelResult:
        applied, early = 0, []
        for label in labels:
            record = self._transactions.get(label.transaction_id)
            if record is None:
                continue
            ts, terminal = record[0], record[1]
            if label.labelled_at < ts:
                early.append(label.transaction_id)
                continue
            entries = self._labels.setdefault(terminal, {})
            current = entries.get(label.transaction_id)
            if current is None or label.labelled_at >= current[1]:
                entries[label.transaction_id] = (ts, label.labelled_at, label.is_fraud)
                applied += 1
        return LabelResult(applied, early)
