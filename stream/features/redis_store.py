"""RedisFeatureStore: the feature state shared by every stream worker, on one Redis or on a
Redis Cluster with the same code.

Keys are hash-tagged into shards, so that each atomic call touches one slot: a card's state and
the records of its transactions share the card's shard (`<base>:{c<n>}:...`), and a
terminal's transactions and labels share the terminal's shard (`<base>:{t<n>}:...`), with
`<base>` = `<prefix>:features:v<STATE_VERSION>`. A batch is read in one round (per card shard
one MGET of its transaction records and of the card states the store does not remember, per
terminal shard a script counting the windows) and written in one (per card shard a script
writing the cards with their transaction records, per terminal shard one adding the terminal
members and dropping those past every window and stale labels); the calls of a round are
pipelined per node (one pipeline on a single Redis, one per primary on a cluster). Scripts run
their many small commands inside Redis: redis-py spends tens of microseconds per pipelined
command, which at ~12 commands per event would dominate a batch. Card states never pass through
Lua when read (a plain MGET) and only once when written (one argument each, checked on their
first 8 bytes): copying a few KB into a Lua string costs more than the commands around it.

Each card state carries a version (8 random bytes, new at every write). A card shard's write
commits only if every card it writes is still at the version read (all or nothing per shard);
otherwise the batch is read and computed again. So a worker whose partitions moved away while
it was frozen (a zombie) can never write over the state of the partition's new owner, nor count
a transaction twice. Terminal members (keyed by transaction) are idempotent and written for
every event of a batch, also for redelivered ones, so a write cut short leaves nothing missing
once the batch comes again. They are written beside the card writes, so a refused or cut-short
attempt can leave the members of events that have no record yet: the read reports which of the
batch's members are stored, and those of new events come off the counts (the batch counts its
new events itself). Such a member also counts, until its transaction is recorded, for other
batches on the terminal (the transaction did take place there); it stays for good only when the
transaction never is (dead-lettered after its card was refused at every attempt, or a backfill
dropped). A label finds its transaction's time and terminal in the transaction's record,
looked up in every card shard (a label names its transaction only): labels are a few per
hundred transactions, and an index by transaction id would cost a write for every one.

A write appends the batch's events of a card to its state (a few rows) instead of rewriting the
whole state (a month of rows, a few KB), and rewrites it only when the rows the card has
dropped since (older than its lookback, beyond MAX_CARD_HISTORY) pass a quarter of those it
keeps; reading drops them again (definition.live_state_rows), so the features are those of a
state rewritten at every batch. The store also remembers the states it wrote itself (version
and rows, up to `card_cache_bytes`): a batch read to be written does not fetch them again,
since its write is checked against the remembered version anyway; a card written meanwhile by
another worker is refused, forgotten and read again, and so are the cards of a write whose
outcome is unknown (Redis failed during it).

Keys expire `state_ttl(label_delay)` after their last write (label delay + 28 d + 1 d: 36 days
at the default 7-day delay). card_id is already a token (the store refuses anything that looks
like a card number). Redis failures raise redis.RedisError (the scorer then decides with
defaults and backfills later).
"""

from __future__ import annotations

import os
import struct
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from fraud.errors import ConfigError
from stream.features.definition import FEATURE_NAMES, BatchResult, EventColumns
from stream.features.encoding import CARD_EVENT_DTYPE, FloatArray, IntArray
from stream.features.store import (
    DEFAULT_LABEL_DELAY,
    DIGEST_BYTES,
    STATE_VERSION,
    FeatureStore,
    LabelEntry,
    LabelResult,
    ParsedLabel,
    StaleStateError,
    StoredState,
    state_ttl,
    terminal_cutoffs,
)

SHARDS = 16  # per kind: card, terminal, transaction index
DEFAULT_CARD_CACHE_BYTES = 64 * 2**20  # card states remembered by a store (~18,000 of 3.5 KB)
# A card state is rewritten instead of appended to once the rows it has dropped pass a quarter
# of the rows it keeps (and this many).
REWRITE_MIN_DROPPED = 8
_ROW = CARD_EVENT_DTYPE.itemsize
_N_FEATURES = len(FEATURE_NAMES)
_RECORD_HEADER = struct.Struct(f"<q{DIGEST_BYTES}s")  # time, content digest
_VERSION_BYTES = 8  # the first bytes of a stored card state: its version

# Names travel length-prefixed ("<bytes>:<name>", binary safe) in a few arguments and the scripts
# build the keys, all in the script's own slot (the shard's hash tag is part of the prefix).
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
"""

# KEYS[1]: anchor. ARGV: shard prefix, terminals (length-prefixed), the count windows as
# microseconds before t ("start:end,..."), each event's terminal number ("i,i,..."), time
# ("t,t,...") and transaction key ("k,k,..."). Returns the numbers of terminals with labels,
# their label hashes, the counts, and per event the time its own member is stored at ('' when
# it is not).
_READ_TERMINALS_LUA = (
    _SPLIT_LUA
    + """
local prefix = ARGV[1]
local terminals = split(ARGV[2])
local labelled, labels, counts = {}, {}, {}
for i = 1, #terminals do
  local entries = redis.call('HGETALL', prefix .. 'tlabel:' .. terminals[i])
  if #entries > 0 then labelled[#labelled + 1] = i; labels[#labels + 1] = entries end
end
local starts, ends, event_terminal = {}, {}, {}
for first, last in string.gmatch(ARGV[3], '(%d+):(%d+)') do
  starts[#starts + 1] = tonumber(first); ends[#ends + 1] = tonumber(last)
end
for index in string.gmatch(ARGV[4], '[^,]+') do event_terminal[#event_terminal + 1] = tonumber(index) end
local tx_keys, present = {}, {}
for tx_key in string.gmatch(ARGV[6], '[^,]+') do tx_keys[#tx_keys + 1] = tx_key end
local event = 0
for t in string.gmatch(ARGV[5], '[^,]+') do
  event = event + 1
  local key = prefix .. 'term:' .. terminals[event_terminal[event]]
  local now = tonumber(t)
  for w = 1, #starts do
    local lower = string.format('%d', now - starts[w])
    local upper = ends[w] == 0 and t or string.format('%d', now - ends[w])
    counts[#counts + 1] = redis.call('ZCOUNT', key, lower, '(' .. upper)
  end
  present[event] = redis.call('ZSCORE', key, tx_keys[event]) or ''
end
return {labelled, labels, table.concat(counts, ','), table.concat(present, ',')}
"""
)

# KEYS[1]: anchor. ARGV: shard prefix, ttl, the number of cards n, how each card is written
# (one letter per card: "S" sets the whole state, "A" appends rows to it), then n cards, the
# 8-byte version each was read at ('' when none), and their n values: the new version followed
# by the whole state (S) or by the rows to append (A); then pairs of transaction and record.
# One argument per item: no state is copied into Lua twice, and the version is checked on the
# state's first 8 bytes only. All or nothing: when any card moved on since it was read, nothing
# is written and the moved cards come back.
_WRITE_CARDS_LUA = """
local prefix, ttl, n, modes = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local moved = {}
for i = 1, n do
  local card = ARGV[4 + i]
  if redis.call('GETRANGE', prefix .. 'card:' .. card, 0, 7) ~= ARGV[4 + n + i] then
    moved[#moved + 1] = card
  end
end
if #moved > 0 then return moved end
for i = 1, n do
  local key, value = prefix .. 'card:' .. ARGV[4 + i], ARGV[4 + 2 * n + i]
  if string.sub(modes, i, i) == 'S' then
    redis.call('SET', key, value, 'EX', ttl)
  else
    redis.call('SETRANGE', key, 0, string.sub(value, 1, 8))
    redis.call('APPEND', key, string.sub(value, 9))
    redis.call('EXPIRE', key, ttl)
  end
end
for i = 5 + 3 * n, #ARGV, 2 do
  redis.call('SET', prefix .. 'tx:' .. ARGV[i], ARGV[i + 1], 'EX', ttl)
end
return moved
"""

# KEYS[1]: anchor. ARGV: shard prefix, ttl, then length-prefixed lists: terminals, the oldest
# time each keeps, their members ("time:key,time:key"), terminals with stale labels and, per
# terminal, the stale label fields (length-prefixed). Idempotent.
_WRITE_TERMINALS_LUA = (
    _SPLIT_LUA
    + """
local prefix, ttl = ARGV[1], ARGV[2]
local terminals, oldest, members = split(ARGV[3]), split(ARGV[4]), split(ARGV[5])
for i = 1, #terminals do
  local key = prefix .. 'term:' .. terminals[i]
  for score, member in string.gmatch(members[i], '(%-?%d+):(%-?%d+)') do
    redis.call('ZADD', key, score, member)
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. oldest[i])
  redis.call('EXPIRE', key, ttl)
end
local stale_terminals, stale_fields = split(ARGV[6]), split(ARGV[7])
for i = 1, #stale_terminals do
  local fields = split(stale_fields[i])
  for j = 1, #fields do redis.call('HDEL', prefix .. 'tlabel:' .. stale_terminals[i], fields[j]) end
end
return #terminals
"""
)

# Latest label wins. KEYS[1]: anchor. ARGV: shard prefix, ttl, then per label
# (terminal, transaction_id, "tx_ts,labelled_at,flag", labelled_at).
_APPLY_LABELS_LUA = """
local prefix, ttl = ARGV[1], ARGV[2]
local applied = 0
for base = 3, #ARGV, 4 do
  local key = prefix .. 'tlabel:' .. ARGV[base]
  local field, value = ARGV[base + 1], ARGV[base + 2]
  local labelled_at = tonumber(ARGV[base + 3])
  local current = redis.call('HGET', key, field)
  local current_at = current and tonumber(string.match(current, '^[^,]+,([^,]+),'))
  if not current_at or current_at <= labelled_at then
    redis.call('HSET', key, field, value)
    applied = applied + 1
  end
  redis.call('EXPIRE', key, ttl)
end
return applied
"""

_SCRIPTS = {
    "read_terminals": _READ_TERMINALS_LUA,
    "write_cards": _WRITE_CARDS_LUA,
    "write_terminals": _WRITE_TERMINALS_LUA,
    "apply_labels": _APPLY_LABELS_LUA,
}


def shard_of(name: str) -> int:
    """The shard of a card, terminal or transaction id (stable across processes)."""
    return zlib.crc32(name.encode()) % SHARDS


@dataclass
class _Call:
    """One call of a round: a script of _SCRIPTS, or a plain Redis command (e.g. MGET) whose
    keys all share the anchor's slot."""

    anchor: str
    name: str  # of a script in _SCRIPTS, or of a Redis command
    args: list[Any]


@dataclass
class _Rounds:
    """Script calls grouped per node, run as one pipeline per node (the same code for one
    Redis and for a cluster: a single Redis is one node)."""

    client: Any
    shas: dict[str, str]
    cluster: bool
    attempts: int = 6  # rounds on a cluster before the error reaches the caller (~3 s)

    def run(self, calls: Sequence[_Call]) -> list[Any]:
        """Every call's answer, in order. On a cluster, a node lost or a slot moved (a replica
        took over) refreshes the slot map and runs the round again, a few times with a pause:
        reads are repeatable, card writes are checked against their versions (a write that had
        landed is then refused and the batch recomputed) and the other writes are idempotent."""
        import redis

        retriable = (
            redis.exceptions.MovedError,
            redis.exceptions.AskError,
            redis.exceptions.ClusterDownError,
            redis.exceptions.TryAgainError,
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
        )
        for attempt in range(self.attempts if self.cluster else 1):
            try:
                return self._run_once(calls)
            except retriable:
                if not self.cluster or attempt == self.attempts - 1:
                    raise
                time.sleep(min(0.1 * 2**attempt, 1.0))
                self.client.nodes_manager.initialize()
        raise AssertionError("unreachable")

    def _run_once(self, calls: Sequence[_Call]) -> list[Any]:
        import redis

        by_node: dict[str, list[int]] = {}
        connections: dict[str, Any] = {}
        for index, call in enumerate(calls):
            name, connection = self._node(call.anchor)
            by_node.setdefault(name, []).append(index)
            connections[name] = connection
        results: list[Any] = [None] * len(calls)
        for name, indexes in by_node.items():
            connection = connections[name]
            for attempt in range(2):
                pipe = connection.pipeline(transaction=False)
                for index in indexes:
                    call = calls[index]
                    if call.name in self.shas:
                        pipe.evalsha(self.shas[call.name], 1, call.anchor, *call.args)
                    else:  # a plain command on keys of the anchor's slot
                        pipe.execute_command(call.name, *call.args)
                try:
                    answers = pipe.execute()
                    break
                except redis.exceptions.NoScriptError:
                    if attempt:
                        raise
                    for source in _SCRIPTS.values():
                        connection.script_load(source)
            for index, answer in zip(indexes, answers, strict=True):
                results[index] = answer
        return results

    def _node(self, anchor: str) -> tuple[str, Any]:
        if not self.cluster:
            return "single", self.client
        node = self.client.get_node_from_key(anchor)
        return node.name, self.client.get_redis_connection(node)


class _CardCache:
    """The card states a store wrote last: card -> (version, rows as the card keeps them, rows
    the stored state holds), least recently used first out beyond `max_bytes` (rows plus
    ENTRY_BYTES each). Thread safe."""

    ENTRY_BYTES = 300  # what an entry costs beside its rows: dict slot, key, tuple, version

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._states: OrderedDict[str, tuple[bytes, bytes, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, cards: Iterable[str]) -> dict[str, tuple[bytes, bytes, int]]:
        found = {}
        with self._lock:
            for card in cards:
                entry = self._states.get(card)
                if entry is not None:
                    self._states.move_to_end(card)
                    found[card] = entry
        return found

    def put(self, states: dict[str, tuple[bytes, bytes, int]]) -> None:
        if not self._max_bytes:
            return
        with self._lock:
            for card, entry in states.items():
                old = self._states.pop(card, None)
                if old is not None:
                    self._bytes -= self._cost(old)
                self._states[card] = entry
                self._bytes += self._cost(entry)
            while self._bytes > self._max_bytes and self._states:
                _card, oldest = self._states.popitem(last=False)
                self._bytes -= self._cost(oldest)

    def forget(self, cards: Iterable[str]) -> None:
        with self._lock:
            for card in cards:
                old = self._states.pop(card, None)
                if old is not None:
                    self._bytes -= self._cost(old)

    @classmethod
    def _cost(cls, entry: tuple[bytes, bytes, int]) -> int:
        """What one remembered state counts for against `max_bytes`: its rows and the entry."""
        return len(entry[1]) + cls.ENTRY_BYTES

    @property
    def bytes(self) -> int:
        """What the remembered states count for against `max_bytes`."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._states)

    def clear(self) -> None:
        with self._lock:
            self._states.clear()
            self._bytes = 0


class RedisFeatureStore(FeatureStore):
    """Feature state in Redis or Redis Cluster; see the module docstring.

    `label_delay` must be the one the served model was trained with (stream/features/definition.py);
    `ttl` defaults to `state_ttl(label_delay)` and may only be longer; `card_cache_bytes` bounds
    the card states it remembers (0: none, every batch reads them).
    """

    def __init__(
        self,
        client: Any,
        prefix: str = "fraud",
        *,
        label_delay: timedelta = DEFAULT_LABEL_DELAY,
        ttl: timedelta | None = None,
        card_cache_bytes: int = DEFAULT_CARD_CACHE_BYTES,
    ) -> None:
        super().__init__(label_delay)
        if not prefix or any(char.isspace() or char in "{}" for char in prefix):
            raise ConfigError(
                f"Redis key prefix must be non-empty, without spaces or braces, got {prefix!r}"
            )
        from redis.cluster import RedisCluster

        cluster = isinstance(client, RedisCluster)
        pool_options = {} if cluster else client.connection_pool.connection_kwargs
        if (client.get_encoder().decode_responses if cluster else False) or pool_options.get(
            "decode_responses"
        ):
            raise ConfigError("RedisFeatureStore needs a client with decode_responses=False")
        needed = state_ttl(label_delay)
        if ttl is not None and ttl < needed:
            raise ConfigError(
                f"ttl {ttl} is shorter than the {needed} the features need with label_delay "
                f"{label_delay} (delay + 28-day window + 1 day); leave ttl unset"
            )
        import hashlib

        self._client = client
        self._prefix = prefix
        self._base = f"{prefix}:features:v{STATE_VERSION}"
        self._ttl = int((ttl or needed).total_seconds())
        self._windows = ",".join(f"{start}:{end}" for start, end in self._count_offsets)
        self._rounds = _Rounds(
            client,
            {name: hashlib.sha1(source.encode()).hexdigest() for name, source in _SCRIPTS.items()},
            cluster,
        )
        self._cards = _CardCache(card_cache_bytes)

    @property
    def key_prefix(self) -> str:
        """Every key of this store starts with this."""
        return self._base + ":"

    @property
    def ttl(self) -> timedelta:
        """How long a key lives after its last write."""
        return timedelta(seconds=self._ttl)

    def _shard(self, kind: str, number: int) -> str:
        return f"{self._base}:{{{kind}{number}}}:"

    def card_key(self, card: str) -> str:
        return f"{self._shard('c', shard_of(card))}card:{card}"

    def terminal_key(self, terminal: str) -> str:
        return f"{self._shard('t', shard_of(terminal))}term:{terminal}"

    def transaction_key(self, card: str, transaction_id: str) -> str:
        return f"{self._shard('c', shard_of(card))}tx:{transaction_id}"

    def clear(self) -> int:
        """Delete every key of this store's prefix (tests, benchmarks); returns how many."""
        self._cards.clear()
        pattern = f"{self.key_prefix}*"
        if self._rounds.cluster:
            keys = list(self._client.scan_iter(match=pattern, count=1000, target_nodes="all"))
            for key in keys:
                self._client.delete(key)
            return len(keys)
        keys = list(self._client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 1000):
            self._client.delete(*keys[start : start + 1000])
        return len(keys)

    # -- reading a batch's state ----------------------------------------------------------

    def _read(self, columns: EventColumns, rows: IntArray, write: bool = True) -> StoredState:
        row_list = rows.tolist()
        cards_by_shard: dict[int, list[str]] = {}
        txs_by_shard: dict[int, list[str]] = {}
        distinct = list(dict.fromkeys(columns.card_id[row] for row in row_list))
        remembered = self._cards.get(distinct) if write else {}
        for card in distinct:
            if card not in remembered:
                cards_by_shard.setdefault(shard_of(card), []).append(card)
        for row in row_list:
            card_shard = shard_of(columns.card_id[row])
            txs_by_shard.setdefault(card_shard, []).append(columns.transaction_id[row])
        # Terminal counts, in the events' order: per terminal shard, its events.
        terminal_rows: dict[int, list[int]] = {}
        for position, row in enumerate(row_list):
            terminal_rows.setdefault(shard_of(columns.terminal_id[row]), []).append(position)
        calls: list[_Call] = []
        for number in sorted(txs_by_shard):
            prefix = self._shard("c", number)
            keys = [f"{prefix}card:{card}" for card in cards_by_shard.get(number, [])]
            keys += [f"{prefix}tx:{transaction}" for transaction in txs_by_shard[number]]
            calls.append(_Call(prefix, "MGET", keys))
        terminal_layout: list[tuple[int, list[int], list[str]]] = []
        for number in sorted(terminal_rows):
            positions = terminal_rows[number]
            number_of: dict[str, int] = {}
            event_terminals = [
                number_of.setdefault(columns.terminal_id[row_list[p]], len(number_of) + 1)
                for p in positions
            ]
            terminals = list(number_of)
            terminal_layout.append((number, positions, terminals))
            prefix = self._shard("t", number)
            calls.append(
                _Call(
                    prefix,
                    "read_terminals",
                    [
                        prefix,
                        _joined(terminals),
                        self._windows,
                        ",".join(map(str, event_terminals)),
                        ",".join(str(columns.ts[row_list[p]]) for p in positions),
                        ",".join(str(columns.tx_key[row_list[p]]) for p in positions),
                    ],
                )
            )
        answers = self._rounds.run(calls)
        known: dict[str, FloatArray] = {}
        known_digest: dict[str, bytes] = {}
        history: dict[str, bytes] = {}
        versions: dict[str, bytes] = {}
        stored_rows: dict[str, int] = {}
        for card, (version, packed, held) in remembered.items():
            versions[card], stored_rows[card] = version, held
            if packed:
                history[card] = packed
        for number, answer in zip(sorted(txs_by_shard), answers, strict=False):
            cards = cards_by_shard.get(number, [])
            for card, state in zip(cards, answer[: len(cards)], strict=True):
                state = state or b""  # no state yet: version b"" (the write checks it)
                versions[card] = state[:_VERSION_BYTES]
                stored_rows[card] = (len(state) - len(versions[card])) // _ROW
                if len(state) > _VERSION_BYTES:
                    history[card] = state[_VERSION_BYTES:]
            for transaction, record in zip(txs_by_shard[number], answer[len(cards) :], strict=True):
                if record is not None:
                    _ts, _terminal, features, digest = _unpack_record(record)
                    known[transaction] = features
                    known_digest[transaction] = digest
        counts = np.zeros((len(row_list), len(self._count_offsets)), dtype=np.float64)
        labels: dict[str, dict[str, LabelEntry]] = {}
        # Positions whose own terminal member is already stored, and the time it is stored at.
        stored_members: list[tuple[int, int]] = []
        for (_number, positions, terminals), answer in zip(
            terminal_layout, answers[len(txs_by_shard) :], strict=True
        ):
            labelled, hashes, flat, present = answer
            values = np.array(flat.split(b","), dtype=np.float64).reshape(
                len(positions), len(self._count_offsets)
            )
            counts[positions] = values
            for number, entries in zip(labelled, hashes, strict=True):
                labels[terminals[number - 1]] = _parse_label_hash(entries)
            stored_members += [
                (p, int(float(score)))
                for p, score in zip(positions, present.split(b","), strict=True)
                if score
            ]
        self._uncount_new_members(columns, row_list, counts, stored_members, known)
        return StoredState(
            known=known,
            known_digest=known_digest,
            card_history=history,
            terminal_counts=counts,
            terminal_labels=labels,
            versions=versions,
            stored_rows=stored_rows,
        )

    def _uncount_new_members(
        self,
        columns: EventColumns,
        row_list: list[int],
        counts: FloatArray,
        stored_members: list[tuple[int, int]],
        known: dict[str, FloatArray],
    ) -> None:
        """Take the stored terminal members of the batch's new events out of `counts`.

        A batch's terminal members are written in the round of its card writes, so an attempt
        whose cards were refused (or a write cut short) leaves the members of events that have
        no record yet. The batch counts its new events itself (batch_features), so such a
        member comes off every new event's window that counted it (at the time it is stored
        at, exactly what the read counted): the counts then hold the terminal's other
        transactions only. A redelivered event's member stays counted: its record exists, and
        the batch does not count it again."""
        leftovers = [
            (position, at)
            for position, at in stored_members
            if columns.transaction_id[row_list[position]] not in known
        ]
        if not leftovers:
            return
        new_by_terminal: dict[str, list[int]] = {}
        for position, row in enumerate(row_list):
            if columns.transaction_id[row] not in known:
                new_by_terminal.setdefault(columns.terminal_id[row], []).append(position)
        starts = np.array([start for start, _ in self._count_offsets], dtype=np.int64)
        ends = np.array([end for _, end in self._count_offsets], dtype=np.int64)
        times = columns.ts[row_list]
        for position, at in leftovers:
            others = new_by_terminal[columns.terminal_id[row_list[position]]]
            window_ts = times[others][:, None]
            counts[others] -= (window_ts - starts <= at) & (at < window_ts - ends)

    # -- writing it back --------------------------------------------------------------------

    def _write(
        self,
        columns: EventColumns,
        rows: IntArray,
        result: BatchResult | None,
        state: StoredState,
        digests: list[bytes],
        kept: IntArray,
    ) -> None:
        """One round: the new events' cards with their transaction records (all or nothing per
        card shard, checked against the versions read), and the terminal members of every kept
        event (idempotent)."""
        card_calls, written = self._card_calls(columns, rows, result, state, digests)
        calls = card_calls + self._terminal_calls(columns, kept, state)
        try:
            answers = self._rounds.run(calls)
        except BaseException:
            self._cards.forget(written)  # whether it landed is unknown: read them again
            raise
        moved = [card for answer in answers[: len(card_calls)] for card in answer]
        if moved:
            # Other shards' cards did move on: read them again. The shards that wrote hold
            # transactions the next attempt treats as redeliveries, and their terminal members
            # are in; those of the refused shards are in too, and come off the counts of the
            # next attempt, to which those events are new again (_uncount_new_members).
            self._cards.forget(written)
            raise StaleStateError([card.decode() for card in moved])
        self._cards.put(written)

    def _card_calls(
        self,
        columns: EventColumns,
        rows: IntArray,
        result: BatchResult | None,
        state: StoredState,
        digests: list[bytes],
    ) -> tuple[list[_Call], dict[str, tuple[bytes, bytes, int]]]:
        """Per card shard a write_cards call, and the states it writes (to remember)."""
        if result is None:
            return [], {}
        # Per card: appended to (A) or rewritten (S), the version read, the new value.
        card_states: dict[int, list[tuple[str, str, bytes, bytes]]] = {}
        written: dict[str, tuple[bytes, bytes, int]] = {}
        fresh = os.urandom(_VERSION_BYTES * len(result.card_history))
        for index, (card, packed) in enumerate(result.card_history.items()):
            read_at = state.versions.get(card, b"")
            version = fresh[index * _VERSION_BYTES : (index + 1) * _VERSION_BYTES]
            appended = result.card_appended.get(card)
            kept_rows = len(packed) // _ROW
            if read_at and appended is not None:
                held = state.stored_rows.get(card, 0) + len(appended) // _ROW
                if held - kept_rows <= max(REWRITE_MIN_DROPPED, kept_rows // 4):
                    card_states.setdefault(shard_of(card), []).append(
                        (card, "A", read_at, version + appended)
                    )
                    written[card] = (version, packed, held)
                    continue
            card_states.setdefault(shard_of(card), []).append(
                (card, "S", read_at, version + packed)
            )
            written[card] = (version, packed, kept_rows)
        tx_records: dict[int, list[tuple[str, bytes]]] = {}
        for row, ts, vector, digest in zip(
            rows.tolist(), columns.ts[rows].tolist(), result.features, digests, strict=True
        ):
            record = _pack_record(ts, digest, columns.terminal_id[row], vector)
            tx_records.setdefault(shard_of(columns.card_id[row]), []).append(
                (columns.transaction_id[row], record)
            )
        calls: list[_Call] = []
        for number in sorted(set(card_states) | set(tx_records)):
            prefix = self._shard("c", number)
            writes = card_states.get(number, [])
            records = tx_records.get(number, [])
            args: list[Any] = [prefix, self._ttl, len(writes), "".join(w[1] for w in writes)]
            args += [card for card, _, _, _ in writes]
            args += [read_at for _, _, read_at, _ in writes]
            args += [value for _, _, _, value in writes]
            for transaction, record in records:
                args += (transaction, record)
            calls.append(_Call(prefix, "write_cards", args))
        return calls, written

    def _terminal_calls(
        self, columns: EventColumns, rows: IntArray, state: StoredState
    ) -> list[_Call]:
        """Per terminal shard a write_terminals call: the members of the events `rows` (new or
        redelivered: idempotent, so an earlier attempt's write cut short leaves nothing
        missing), the members past every window and the labels gone stale."""
        members: dict[int, dict[str, list[str]]] = {}
        for row, ts, tx_key in zip(
            rows.tolist(), columns.ts[rows].tolist(), columns.tx_key[rows].tolist(), strict=True
        ):
            terminal = columns.terminal_id[row]
            members.setdefault(shard_of(terminal), {}).setdefault(terminal, []).append(
                f"{ts}:{tx_key}"
            )
        cutoffs = terminal_cutoffs(columns, rows, self._retention_us)
        calls: list[_Call] = []
        for number, by_terminal in sorted(members.items()):
            stale: dict[str, list[str]] = {}
            for terminal in by_terminal:
                known_labels = state.terminal_labels.get(terminal, {})
                old = [tx for tx, entry in known_labels.items() if entry[0] < cutoffs[terminal]]
                if old:
                    stale[terminal] = old
            prefix = self._shard("t", number)
            calls.append(
                _Call(
                    prefix,
                    "write_terminals",
                    [
                        prefix,
                        self._ttl,
                        _joined(by_terminal),
                        _joined(str(cutoffs[terminal]) for terminal in by_terminal),
                        _joined(",".join(entries) for entries in by_terminal.values()),
                        _joined(stale),
                        _joined(_joined(fields) for fields in stale.values()),
                    ],
                )
            )
        return calls

    # -- labels -------------------------------------------------------------------------------

    def _write_labels(self, labels: list[ParsedLabel]) -> LabelResult:
        # A label names its transaction only: its record (time, terminal) is looked up in every
        # card shard, one MGET each. Labels are a few per hundred transactions; the index this
        # spares cost a write for every transaction.
        transactions = [label.transaction_id for label in labels]
        prefixes = [self._shard("c", number) for number in range(SHARDS)]
        lookups = [
            _Call(prefix, "MGET", [f"{prefix}tx:{transaction}" for transaction in transactions])
            for prefix in prefixes
        ]
        # An id reused under another card (a producer's error) has a record in each card's
        # shard: the label goes to the latest transaction.
        where: dict[str, tuple[int, str]] = {}
        for answer in self._rounds.run(lookups):
            for transaction, record in zip(transactions, answer, strict=True):
                if record is not None:
                    ts, terminal, _features, _digest = _unpack_record(record)
                    seen = where.get(transaction)
                    if seen is None or ts > seen[0]:
                        where[transaction] = (ts, terminal)
        found = [
            (label, where[label.transaction_id][0], where[label.transaction_id][1])
            for label in labels
            if label.transaction_id in where
        ]
        early = [label.transaction_id for label, ts, _ in found if label.labelled_at < ts]
        per_terminal_shard: dict[int, list[Any]] = {}
        for label, ts, terminal in found:
            if label.labelled_at < ts:
                continue
            per_terminal_shard.setdefault(shard_of(terminal), []).extend(
                [
                    terminal,
                    label.transaction_id,
                    f"{ts},{label.labelled_at},{label.is_fraud}",
                    label.labelled_at,
                ]
            )
        calls = [
            _Call(
                self._shard("t", number),
                "apply_labels",
                [self._shard("t", number), self._ttl, *args],
            )
            for number, args in sorted(per_terminal_shard.items())
        ]
        applied = sum(int(answer) for answer in self._rounds.run(calls)) if calls else 0
        return LabelResult(applied, early)


def _joined(items: Iterable[str | bytes]) -> bytes:
    """Items as one length-prefixed string ("<bytes>:<item>..."), split again by the scripts."""
    parts = []
    for item in items:
        data = item.encode() if isinstance(item, str) else item
        parts.append(b"%d:%s" % (len(data), data))
    return b"".join(parts)


def _parse_label_hash(flat: list[bytes]) -> dict[str, LabelEntry]:
    entries = {}
    for field_name, value in zip(flat[::2], flat[1::2], strict=True):
        ts, labelled_at, flag = value.split(b",")
        entries[field_name.decode()] = (int(ts), int(labelled_at), int(flag))
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
