"""Feature state stores: per-card and per-terminal aggregates behind one interface.

`InMemoryFeatureStore` (tests, replay checks, single process) and `RedisFeatureStore` (the stream
workers) share the batch logic below; only where the state lives differs. Both compute every
feature with `stream.features.batch_features`, the definition training replays.

Per batch: encode events, read the state of all their cards and terminals (Redis: one round
trip), compute features of events never seen before, write the new state (Redis: one MULTI/EXEC
round trip). Each processed transaction leaves a record (time, terminal, features) with the same
expiry as the state: a replayed event returns its recorded features and is not counted again, and
`apply_labels` uses it to find the transaction's terminal and time.
"""

from __future__ import annotations

import bisect
import struct
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from fraud.errors import ConfigError, ValidationError
from stream.feature_encoding import FloatArray, IntArray, columns_from_events, timestamp_us
from stream.features import (
    CARD_EVENT_DTYPE,
    DAY_US,
    FEATURE_NAMES,
    TERMINAL_LOOKBACK_US,
    TERMINAL_WINDOWS,
    BatchResult,
    EventColumns,
    TerminalFrauds,
    batch_features,
    feature_dicts,
    features_without_history,
)

STATE_VERSION = 1  # bump when the layout of stored state changes; old keys then expire unused
STATE_TTL = timedelta(days=31)  # longest window (30 d) + a day for late events and labels
_TERMINAL_RETENTION_US = TERMINAL_LOOKBACK_US + DAY_US
_N_FEATURES = len(FEATURE_NAMES)
_RECORD_HEADER = struct.Struct("<q")
LABELS = {"fraud": 1, "legit": 0}

Features = dict[str, float | None]
LabelEntry = tuple[int, int, int]  # (transaction time, labelled_at, 1 fraud / 0 legit)


def default_features(event: Mapping[str, Any]) -> Features:
    """Features with no card or terminal history: what the scorer uses when Redis is down."""
    return features_without_history(event)


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


@dataclass
class StoredState:
    """What a store read for a batch; the rows of terminal_counts follow `rows`."""

    known: dict[str, FloatArray]  # transaction_id -> recorded features
    card_history: dict[str, np.ndarray]
    terminal_counts: FloatArray
    terminal_labels: dict[str, dict[str, LabelEntry]]


class FeatureStore(ABC):
    """The interface both stores implement; see the module docstring."""

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
        is_new = np.array([columns.transaction_id[row] not in state.known for row in rows.tolist()])
        by_transaction = dict(state.known)
        if is_new.any():
            new_rows = rows[is_new]
            result = batch_features(
                columns,
                new_rows,
                state.card_history,
                state.terminal_counts[is_new],
                _frauds_by_terminal(state.terminal_labels),
            )
            for row, vector in zip(new_rows.tolist(), result.features, strict=True):
                by_transaction[columns.transaction_id[row]] = vector
            self._write(columns, new_rows, result, state)
        return feature_dicts(np.stack([by_transaction[tx] for tx in columns.transaction_id]))

    def apply_labels(self, labels: Sequence[Mapping[str, Any]]) -> int:
        """Record confirmed labels for the terminal fraud-rate features.

        A label counts from its labelled_at on. Per transaction the latest label wins; labels of
        unknown (or expired) transactions are ignored. Returns how many labels are now in effect.
        """
        parsed = parse_labels(labels)
        return self._write_labels(list(parsed.values())) if parsed else 0

    def default_features(self, event: Mapping[str, Any]) -> Features:
        return default_features(event)

    @abstractmethod
    def _read(self, columns: EventColumns, rows: IntArray) -> StoredState: ...

    @abstractmethod
    def _write(
        self, columns: EventColumns, rows: IntArray, result: BatchResult, state: StoredState
    ) -> None: ...

    @abstractmethod
    def _write_labels(self, labels: list[ParsedLabel]) -> int: ...


def _label_cutoffs(columns: EventColumns, rows: IntArray) -> dict[str, int]:
    """Per terminal in the batch: label entries of transactions before this are past every window."""
    newest: dict[str, int] = {}
    for row, ts in zip(rows.tolist(), columns.ts[rows].tolist(), strict=True):
        terminal = columns.terminal_id[row]
        newest[terminal] = max(ts, newest.get(terminal, ts))
    return {terminal: ts - _TERMINAL_RETENTION_US for terminal, ts in newest.items()}


class InMemoryFeatureStore(FeatureStore):
    """State in process memory; the same results as RedisFeatureStore, for tests and tools."""

    def __init__(self) -> None:
        self._transactions: dict[str, tuple[int, str, FloatArray]] = {}
        self._expiry: deque[tuple[int, str]] = deque()
        self._cards: dict[str, np.ndarray] = {}
        self._terminal_times: dict[str, list[int]] = {}
        self._labels: dict[str, dict[str, LabelEntry]] = {}
        self._newest = np.iinfo(np.int64).min
        self._writes_since_sweep = 0

    def _read(self, columns: EventColumns, rows: IntArray) -> StoredState:
        known = {}
        for row in rows.tolist():
            record = self._transactions.get(columns.transaction_id[row])
            if record is not None:
                known[columns.transaction_id[row]] = record[2]
        counts = np.zeros((len(rows), len(TERMINAL_WINDOWS)))
        for index, (row, t) in enumerate(
            zip(rows.tolist(), columns.ts[rows].tolist(), strict=True)
        ):
            times = self._terminal_times.get(columns.terminal_id[row])
            if times:
                end = bisect.bisect_left(times, t)
                for w, (_, width) in enumerate(TERMINAL_WINDOWS):
                    counts[index, w] = end - bisect.bisect_left(times, t - width, 0, end)
        cards = {columns.card_id[row] for row in rows.tolist()}
        terminals = {columns.terminal_id[row] for row in rows.tolist()}
        return StoredState(
            known=known,
            card_history={card: self._cards[card] for card in cards if card in self._cards},
            terminal_counts=counts,
            terminal_labels={t: self._labels[t] for t in terminals if t in self._labels},
        )

    def _write(
        self, columns: EventColumns, rows: IntArray, result: BatchResult, state: StoredState
    ) -> None:
        self._cards.update(result.card_history)
        for row, vector in zip(rows.tolist(), result.features, strict=True):
            transaction_id, terminal = columns.transaction_id[row], columns.terminal_id[row]
            ts = int(columns.ts[row])
            self._transactions[transaction_id] = (ts, terminal, vector)
            self._expiry.append((ts, transaction_id))
            self._newest = max(self._newest, ts)
            bisect.insort(self._terminal_times.setdefault(terminal, []), ts)
        for terminal, cutoff in _label_cutoffs(columns, rows).items():
            times = self._terminal_times[terminal]
            del times[: bisect.bisect_left(times, cutoff)]
            entries = self._labels.get(terminal, {})
            for transaction_id in [tx for tx, entry in entries.items() if entry[0] < cutoff]:
                del entries[transaction_id]
        self._expire(len(rows))

    def _expire(self, written: int) -> None:
        """Forget what Redis would have expired: records and idle cards older than the TTL
        (in event time, the only clock of a replay)."""
        cutoff = self._newest - STATE_TTL // timedelta(microseconds=1)
        while self._expiry and self._expiry[0][0] < cutoff:
            _, transaction_id = self._expiry.popleft()
            self._transactions.pop(transaction_id, None)
        self._writes_since_sweep += written
        if self._writes_since_sweep > max(100_000, len(self._cards)):
            self._writes_since_sweep = 0
            self._cards = {
                card: history
                for card, history in self._cards.items()
                if history["ts"][-1] >= cutoff
            }

    def _write_labels(self, labels: list[ParsedLabel]) -> int:
        applied = 0
        for label in labels:
            record = self._transactions.get(label.transaction_id)
            if record is None:
                continue
            ts, terminal, _ = record
            entries = self._labels.setdefault(terminal, {})
            current = entries.get(label.transaction_id)
            if current is None or label.labelled_at >= current[1]:
                entries[label.transaction_id] = (ts, label.labelled_at, label.is_fraud)
                applied += 1
        return applied


# Latest label wins, atomically: KEYS are label hashes, ARGV = ttl, then per key
# (transaction_id, "tx_ts,labelled_at,flag", labelled_at).
_APPLY_LABELS_LUA = """
local applied = 0
for i = 1, #KEYS do
  local base = 1 + (i - 1) * 3
  local field, value = ARGV[base + 1], ARGV[base + 2]
  local labelled_at = tonumber(ARGV[base + 3])
  local current = redis.call('HGET', KEYS[i], field)
  local current_at = current and tonumber(string.match(current, '^[^,]+,([^,]+),'))
  if not current_at or current_at <= labelled_at then
    redis.call('HSET', KEYS[i], field, value)
    applied = applied + 1
  end
  redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return applied
"""


class RedisFeatureStore(FeatureStore):
    """State in Redis, shared by every worker; one read and one write round trip per batch.

    Keys (all under `prefix`, expiring after STATE_TTL without writes): card state
    `card:<card_id>` (packed CARD_EVENT_DTYPE rows), terminal transactions `term:<terminal_id>`
    (sorted set of transaction ids by time, so concurrent workers add idempotently), terminal
    labels `tlabel:<terminal_id>` (hash) and transaction records `tx:<transaction_id>`.
    Redis failures surface as redis.RedisError (the scorer falls back to default_features).
    """

    def __init__(self, client: Any, prefix: str = "fraud", *, ttl: timedelta = STATE_TTL) -> None:
        if not prefix or any(char.isspace() for char in prefix):
            raise ConfigError(f"Redis key prefix must be non-empty without spaces, got {prefix!r}")
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ConfigError("RedisFeatureStore needs a client with decode_responses=False")
        self._client = client
        self._base = f"{prefix}:features:v{STATE_VERSION}:"
        self._ttl = int(ttl.total_seconds())
        self._apply_labels_script = client.register_script(_APPLY_LABELS_LUA)

    @property
    def key_prefix(self) -> str:
        """Every key of this store starts with this."""
        return self._base

    def _key(self, kind: str, name: str) -> str:
        return f"{self._base}{kind}:{name}"

    def clear(self) -> int:
        """Delete every key of this store's prefix (tests, benchmarks); returns how many."""
        keys = list(self._client.scan_iter(match=f"{self._base}*", count=1000))
        for start in range(0, len(keys), 1000):
            self._client.delete(*keys[start : start + 1000])
        return len(keys)

    def _read(self, columns: EventColumns, rows: IntArray) -> StoredState:
        row_list = rows.tolist()
        transactions = [columns.transaction_id[row] for row in row_list]
        cards = list(dict.fromkeys(columns.card_id[row] for row in row_list))
        terminals = list(dict.fromkeys(columns.terminal_id[row] for row in row_list))
        pipe = self._client.pipeline(transaction=False)
        pipe.mget([self._key("tx", tx) for tx in transactions])
        pipe.mget([self._key("card", card) for card in cards])
        for row, t in zip(row_list, columns.ts[rows].tolist(), strict=True):
            key = self._key("term", columns.terminal_id[row])
            for _, width in TERMINAL_WINDOWS:
                pipe.zcount(key, t - width, f"({t}")
        for terminal in terminals:
            pipe.hgetall(self._key("tlabel", terminal))
        replies = pipe.execute()
        records, blobs = replies[0], replies[1]
        n_counts = len(row_list) * len(TERMINAL_WINDOWS)
        counts = np.array(replies[2 : 2 + n_counts], dtype=np.float64)
        labels = {}
        for terminal, entries in zip(terminals, replies[2 + n_counts :], strict=True):
            if entries:
                labels[terminal] = {
                    field.decode(): _parse_label_entry(value) for field, value in entries.items()
                }
        return StoredState(
            known={
                tx: _unpack_record(record)[2]
                for tx, record in zip(transactions, records, strict=True)
                if record is not None
            },
            card_history={
                card: np.frombuffer(blob, dtype=CARD_EVENT_DTYPE)
                for card, blob in zip(cards, blobs, strict=True)
                if blob
            },
            terminal_counts=counts.reshape(len(row_list), len(TERMINAL_WINDOWS)),
            terminal_labels=labels,
        )

    def _write(
        self, columns: EventColumns, rows: IntArray, result: BatchResult, state: StoredState
    ) -> None:
        pipe = self._client.pipeline(transaction=True)
        for card, history in result.card_history.items():
            pipe.set(self._key("card", card), history.tobytes(), ex=self._ttl)
        members: dict[str, dict[str, int]] = {}
        for row, vector in zip(rows.tolist(), result.features, strict=True):
            transaction_id, terminal = columns.transaction_id[row], columns.terminal_id[row]
            ts = int(columns.ts[row])
            members.setdefault(terminal, {})[transaction_id] = ts
            record = _pack_record(ts, terminal, vector)
            pipe.set(self._key("tx", transaction_id), record, ex=self._ttl)
        cutoffs = _label_cutoffs(columns, rows)
        for terminal, mapping in members.items():
            key = self._key("term", terminal)
            pipe.zadd(key, mapping)
            pipe.zremrangebyscore(key, "-inf", f"({cutoffs[terminal]}")
            pipe.expire(key, self._ttl)
            stale = [
                tx
                for tx, entry in state.terminal_labels.get(terminal, {}).items()
                if entry[0] < cutoffs[terminal]
            ]
            if stale:
                pipe.hdel(self._key("tlabel", terminal), *stale)
        pipe.execute()

    def _write_labels(self, labels: list[ParsedLabel]) -> int:
        pipe = self._client.pipeline(transaction=False)
        pipe.mget([self._key("tx", label.transaction_id) for label in labels])
        records = pipe.execute()[0]
        keys: list[str] = []
        args: list[Any] = [self._ttl]
        for label, record in zip(labels, records, strict=True):
            if record is None:
                continue
            ts, terminal, _ = _unpack_record(record)
            keys.append(self._key("tlabel", terminal))
            args += [
                label.transaction_id,
                f"{ts},{label.labelled_at},{label.is_fraud}",
                label.labelled_at,
            ]
        if not keys:
            return 0
        return int(self._apply_labels_script(keys=keys, args=args))


def _parse_label_entry(value: bytes) -> LabelEntry:
    ts, labelled_at, flag = value.split(b",")
    return int(ts), int(labelled_at), int(flag)


def _pack_record(ts: int, terminal: str, features: FloatArray) -> bytes:
    return _RECORD_HEADER.pack(ts) + features.astype("<f8").tobytes() + terminal.encode()


def _unpack_record(record: bytes) -> tuple[int, str, FloatArray]:
    (ts,) = _RECORD_HEADER.unpack_from(record)
    body = _RECORD_HEADER.size + 8 * _N_FEATURES
    features = np.frombuffer(record, dtype="<f8", count=_N_FEATURES, offset=_RECORD_HEADER.size)
    return ts, record[body:].decode(), features.astype(np.float64)
