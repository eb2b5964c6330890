"""RedisFeatureStore: the feature state shared by every stream worker.

One round trip reads a batch's state and one writes it back, each a Lua script: a script runs
its many small commands inside Redis (redis-py spends tens of microseconds per pipelined
command, which at ~12 commands per event would dominate the batch) and a script is atomic, so a
crash never leaves a transaction recorded without its state update or the other way round.
The labels path (apply_labels) is one lookup and one script.

Keys, all under `<prefix>:features:v<STATE_VERSION>:` and expiring `state_ttl(label_delay)`
after their last write (label delay + 28 d + 1 d: 36 days at the default 7-day delay):
`card:<card_id>` packed CARD_EVENT_DTYPE rows; `term:<terminal_id>` sorted set of the
terminal's transactions by time (members are transaction keys, so workers sharing a terminal add
idempotently); `tlabel:<terminal_id>` hash of its labels; `tx:<transaction_id>` the record
(time, content digest, features, terminal).
card_id is already a token (the store refuses anything that looks like a card number).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import numpy as np

from fraud.errors import ConfigError
from stream.features.definition import FEATURE_NAMES, BatchResult, EventColumns
from stream.features.encoding import FloatArray, IntArray
from stream.features.store import (
    DEFAULT_LABEL_DELAY,
    DIGEST_BYTES,
    STATE_VERSION,
    FeatureStore,
    LabelEntry,
    LabelResult,
    ParsedLabel,
    StoredState,
    state_ttl,
    terminal_cutoffs,
)

_N_FEATURES = len(FEATURE_NAMES)
_RECORD_HEADER = struct.Struct(f"<q{DIGEST_BYTES}s")  # time, content digest

# Names travel length-prefixed ("<bytes>:<name>", binary safe) in a few arguments and the scripts
# build the keys: per-argument overhead in redis-py, not Redis, limits a batch otherwise. (Keys
# not declared in KEYS are fine on a single Redis; a Redis Cluster would need hash tags.)
# Numbers stay strings or go through string.format('%d'): Lua's tostring keeps 14 digits and
# times are 16-digit microseconds.
_SPLIT_LUA = """
local function split(s)
  local out, pos = {}, 1
  while pos <= #s do
    local colon = string.find(s, ':', pos, true)
    local size = tonumber(string.sub(s, pos, colon - 1))
    out[#out + 1] = string.sub(s, colon + 1, colon + size)
    pos = colon + size + 1
  end
  return out
end
local function joined(items)
  local parts = {}
  for i = 1, #items do parts[#parts + 1] = #items[i] .. ':' .. items[i] end
  return table.concat(parts)
end
"""

# ARGV: prefix, transactions, cards, terminals (length-prefixed), the count windows as
# microseconds before t ("start:end,start:end,...", each counting [t - start, t - end)), each
# event's terminal number ("i,i,...") and time ("t,t,..."). Returns the numbers of the
# transactions already recorded and their records, the card states (length-prefixed, empty
# when none), the numbers of terminals with labels and their label hashes, and the counts.
_READ_LUA = (
    _SPLIT_LUA
    + """
local prefix = ARGV[1]
local transactions, cards, terminals = split(ARGV[2]), split(ARGV[3]), split(ARGV[4])
local seen, records, states, labelled, labels, counts = {}, {}, {}, {}, {}, {}
for i = 1, #transactions do
  local record = redis.call('GET', prefix .. 'tx:' .. transactions[i])
  if record then seen[#seen + 1] = i; records[#records + 1] = record end
end
for i = 1, #cards do states[i] = redis.call('GET', prefix .. 'card:' .. cards[i]) or '' end
for i = 1, #terminals do
  local entries = redis.call('HGETALL', prefix .. 'tlabel:' .. terminals[i])
  if #entries > 0 then labelled[#labelled + 1] = i; labels[#labels + 1] = entries end
end
local starts, ends, event_terminal = {}, {}, {}
for first, last in string.gmatch(ARGV[5], '(%d+):(%d+)') do
  starts[#starts + 1] = tonumber(first); ends[#ends + 1] = tonumber(last)
end
for index in string.gmatch(ARGV[6], '[^,]+') do event_terminal[#event_terminal + 1] = tonumber(index) end
local event = 0
for t in string.gmatch(ARGV[7], '[^,]+') do
  event = event + 1
  local key = prefix .. 'term:' .. terminals[event_terminal[event]]
  local now = tonumber(t)
  for w = 1, #starts do
    local lower = string.format('%d', now - starts[w])
    local upper = ends[w] == 0 and t or string.format('%d', now - ends[w])
    counts[#counts + 1] = redis.call('ZCOUNT', key, lower, '(' .. upper)
  end
end
return {seen, records, joined(states), labelled, labels, table.concat(counts, ',')}
"""
)

# ARGV: prefix, ttl, then length-prefixed lists: cards, their states, transactions, their
# records, terminals, the oldest time each keeps, their new members ("time:key,time:key"),
# terminals with stale labels and, per terminal, the stale label fields (length-prefixed).
_WRITE_LUA = (
    _SPLIT_LUA
    + """
local prefix, ttl = ARGV[1], ARGV[2]
local cards, states = split(ARGV[3]), split(ARGV[4])
for i = 1, #cards do redis.call('SET', prefix .. 'card:' .. cards[i], states[i], 'EX', ttl) end
local transactions, records = split(ARGV[5]), split(ARGV[6])
for i = 1, #transactions do
  redis.call('SET', prefix .. 'tx:' .. transactions[i], records[i], 'EX', ttl)
end
local terminals, oldest, members = split(ARGV[7]), split(ARGV[8]), split(ARGV[9])
for i = 1, #terminals do
  local key = prefix .. 'term:' .. terminals[i]
  for score, member in string.gmatch(members[i], '(%-?%d+):(%-?%d+)') do
    redis.call('ZADD', key, score, member)
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. oldest[i])
  redis.call('EXPIRE', key, ttl)
end
local stale_terminals, stale_fields = split(ARGV[10]), split(ARGV[11])
for i = 1, #stale_terminals do
  local fields = split(stale_fields[i])
  for j = 1, #fields do redis.call('HDEL', prefix .. 'tlabel:' .. stale_terminals[i], fields[j]) end
end
return #transactions
"""
)

# Latest label wins: KEYS are label hashes; ARGV = ttl, then per key
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
    """Feature state in Redis; see the module docstring. Redis failures raise redis.RedisError
    (the scorer then falls back to `default_features`).

    `label_delay` must be the one the served model was trained with (stream/features/definition.py);
    `ttl` defaults to `state_ttl(label_delay)` and may only be longer.
    """

    def __init__(
        self,
        client: Any,
        prefix: str = "fraud",
        *,
        label_delay: timedelta = DEFAULT_LABEL_DELAY,
        ttl: timedelta | None = None,
    ) -> None:
        super().__init__(label_delay)
        if not prefix or any(char.isspace() for char in prefix):
            raise ConfigError(f"Redis key prefix must be non-empty without spaces, got {prefix!r}")
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ConfigError("RedisFeatureStore needs a client with decode_responses=False")
        needed = state_ttl(label_delay)
        if ttl is not None and ttl < needed:
            raise ConfigError(
                f"ttl {ttl} is shorter than the {needed} the features need with label_delay "
                f"{label_delay} (delay + 28-day window + 1 day); leave ttl unset"
            )
        self._client = client
        self._base = f"{prefix}:features:v{STATE_VERSION}:"
        self._ttl = int((ttl or needed).total_seconds())
        self._windows = ",".join(f"{start}:{end}" for start, end in self._count_offsets)
        # register_script only hashes the source; scripts load on first use.
        self._read_script = client.register_script(_READ_LUA)
        self._write_script = client.register_script(_WRITE_LUA)
        self._apply_labels_script = client.register_script(_APPLY_LABELS_LUA)

    @property
    def key_prefix(self) -> str:
        """Every key of this store starts with this."""
        return self._base

    @property
    def ttl(self) -> timedelta:
        """How long a key lives after its last write."""
        return timedelta(seconds=self._ttl)

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
        terminal_number: dict[str, int] = {}
        event_terminals = [
            terminal_number.setdefault(columns.terminal_id[row], len(terminal_number) + 1)
            for row in row_list
        ]
        terminals = list(terminal_number)
        args = [
            self._base,
            _joined(transactions),
            _joined(cards),
            _joined(terminals),
            self._windows,
            ",".join(map(str, event_terminals)),
            ",".join(map(str, columns.ts[rows].tolist())),
        ]
        seen, records, states, labelled, labels, counts = self._read_script(args=args)
        unpacked = {
            transactions[number - 1]: _unpack_record(record)
            for number, record in zip(seen, records, strict=True)
        }
        return StoredState(
            known={tx: record[2] for tx, record in unpacked.items()},
            known_digest={tx: record[3] for tx, record in unpacked.items()},
            card_history={
                card: state for card, state in zip(cards, _split(states), strict=True) if state
            },
            terminal_counts=np.array(counts.split(b","), dtype=np.float64).reshape(
                len(row_list), len(self._count_offsets)
            ),
            terminal_labels={
                terminals[number - 1]: _parse_label_hash(flat)
                for number, flat in zip(labelled, labels, strict=True)
            },
        )

    def _write(
        self,
        columns: EventColumns,
        rows: IntArray,
        result: BatchResult,
        state: StoredState,
        digests: list[bytes],
    ) -> None:
        transactions: list[str] = []
        records: list[bytes] = []
        members: dict[str, list[str]] = {}
        for row, ts, tx_key, vector, digest in zip(
            rows.tolist(),
            columns.ts[rows].tolist(),
            columns.tx_key[rows].tolist(),
            result.features,
            digests,
            strict=True,
        ):
            terminal = columns.terminal_id[row]
            members.setdefault(terminal, []).append(f"{ts}:{tx_key}")
            transactions.append(columns.transaction_id[row])
            records.append(_pack_record(ts, digest, terminal, vector))
        cutoffs = terminal_cutoffs(columns, rows, self._retention_us)
        stale: dict[str, list[str]] = {}
        for terminal, entries in state.terminal_labels.items():
            old = [tx for tx, entry in entries.items() if entry[0] < cutoffs.get(terminal, 0)]
            if old:
                stale[terminal] = old
        args = [
            self._base,
            self._ttl,
            _joined(result.card_history),
            _joined(result.card_history.values()),
            _joined(transactions),
            _joined(records),
            _joined(members),
            _joined(str(cutoffs[terminal]) for terminal in members),
            _joined(",".join(entries) for entries in members.values()),
            _joined(stale),
            _joined(_joined(fields) for fields in stale.values()),
        ]
        self._write_script(args=args)

    def _write_labels(self, labels: list[ParsedLabel]) -> LabelResult:
        records = self._client.mget([self._key("tx", label.transaction_id) for label in labels])
        keys: list[str] = []
        args: list[Any] = [self._ttl]
        early: list[str] = []
        for label, record in zip(labels, records, strict=True):
            if record is None:
                continue
            ts, terminal, _, _ = _unpack_record(record)
            if label.labelled_at < ts:
                early.append(label.transaction_id)
                continue
            keys.append(self._key("tlabel", terminal))
            value = f"{ts},{label.labelled_at},{label.is_fraud}"
            args += [label.transaction_id, value, label.labelled_at]
        if not keys:
            return LabelResult(0, early)
        return LabelResult(int(self._apply_labels_script(keys=keys, args=args)), early)


def _joined(items: Iterable[str | bytes]) -> bytes:
    """Items as one length-prefixed string ("<bytes>:<item>..."), split again by the scripts."""
    parts = []
    for item in items:
        data = item.encode() if isinstance(item, str) else item
        parts.append(b"%d:%s" % (len(data), data))
    return b"".join(parts)


def _split(data: bytes) -> list[bytes]:
    items = []
    position = 0
    while position < len(data):
        colon = data.index(b":", position)
        end = colon + 1 + int(data[position:colon])
        items.append(data[colon + 1 : end])
        position = end
    return items


def _parse_label_hash(flat: list[bytes]) -> dict[str, LabelEntry]:
    entries = {}
    for field, value in zip(flat[::2], flat[1::2], strict=True):
        ts, labelled_at, flag = value.split(b",")
        entries[field.decode()] = (int(ts), int(labelled_at), int(flag))
    return entries


def _pack_record(ts: int, digest: bytes, terminal: str, features: FloatArray) -> bytes:
    header = _RECORD_HEADER.pack(ts, digest)
    return header + features.astype("<f8").tobytes() + terminal.encode()


def _unpack_record(record: bytes) -> tuple[int, str, FloatArray, bytes]:
    """(time, terminal, features, content digest) of a transaction record."""
    ts, digest = _RECORD_HEADER.unpack_from(record)
    body = _RECORD_HEADER.size + 8 * _N_FEATURES
    features = np.frombuffer(record, dtype="<f8", count=_N_FEATURES, offset=_RECORD_HEADER.size)
    return ts, record[body:].decode(), features.astype(np.float64), digest
