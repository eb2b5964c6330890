"""The console's own state, in one SQLite file: alerts, decisions and labels as read from their
topics, the latest verdict per transaction, claims, login sessions, and how far each topic
partition has been read.

    store = ConsoleStore(path)
    store.apply(batch)                          # records + their topic positions, atomically
    rows = store.queue(QueueQuery(sort="score"), now_us)
    claim = store.claim("tx-1", "a.smith", now_us, minutes=15)

Resuming without losing or duplicating: a batch's records and the next offset of every
partition it read are written in one transaction, so after a crash the console starts reading
exactly after what it stored. Records are keyed too (an alert and a decision by transaction id,
a label by its topic position), so the same record read twice is kept once.

Latest wins: a transaction's verdict is its label with the latest `labelled_at`, then the
latest topic position, the rule retraining uses (training/retrain/labelled_set.py).

Times are integer microseconds since the epoch (UTC): event and label times on the
transactions' clock, `decided_us`, claims and sessions on the wall clock.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from fraud.times import parse_utc

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    transaction_id TEXT PRIMARY KEY,
    card_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    merchant_category TEXT NOT NULL,
    event_time TEXT NOT NULL,
    event_us INTEGER NOT NULL,
    decided_at TEXT NOT NULL,
    decided_us INTEGER NOT NULL,
    amount REAL NOT NULL,
    score REAL NOT NULL,
    tier TEXT NOT NULL,
    model_version TEXT NOT NULL,
    reason_codes TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_terminal ON alerts (terminal_id, event_us);
CREATE TABLE IF NOT EXISTS decisions (
    transaction_id TEXT PRIMARY KEY,
    card_id TEXT NOT NULL,
    event_us INTEGER NOT NULL,
    event_time TEXT NOT NULL,
    amount REAL,
    score REAL NOT NULL,
    tier TEXT NOT NULL,
    model_version TEXT NOT NULL,
    record TEXT  -- the whole decision, kept for review and decline only
);
CREATE INDEX IF NOT EXISTS decisions_card ON decisions (card_id, event_us);
CREATE TABLE IF NOT EXISTS labels (
    topic_partition INTEGER NOT NULL,
    topic_offset INTEGER NOT NULL,
    transaction_id TEXT NOT NULL,
    label TEXT NOT NULL,
    analyst_id TEXT NOT NULL,
    labelled_at TEXT NOT NULL,
    labelled_us INTEGER NOT NULL,
    source TEXT NOT NULL,
    note TEXT,
    PRIMARY KEY (topic_partition, topic_offset)
);
CREATE INDEX IF NOT EXISTS labels_transaction ON labels (transaction_id);
CREATE TABLE IF NOT EXISTS verdicts (
    transaction_id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    analyst_id TEXT NOT NULL,
    labelled_at TEXT NOT NULL,
    labelled_us INTEGER NOT NULL,
    source TEXT NOT NULL,
    note TEXT,
    topic_partition INTEGER NOT NULL,
    topic_offset INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    transaction_id TEXT PRIMARY KEY,
    analyst_id TEXT NOT NULL,
    claimed_us INTEGER NOT NULL,
    expires_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    analyst_id TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    expires_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS positions (
    topic TEXT NOT NULL,
    topic_partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, topic_partition)
);
"""

DAY_US = 86_400 * 1_000_000
Position = tuple[str, int]  # (topic, partition)


def micros(text: str) -> int:
    """ISO 8601 instant -> microseconds since the epoch (exact, no float rounding)."""
    moment = parse_utc(text)
    return (moment.toordinal() - 719_163) * DAY_US + (
        (moment.hour * 3600 + moment.minute * 60 + moment.second) * 1_000_000 + moment.microsecond
    )


@dataclass
class IngestBatch:
    """What one read from the three topics brings: validated records, and for each partition
    read the offset to continue from."""

    alerts: list[Mapping[str, Any]] = field(default_factory=list)
    decisions: list[Mapping[str, Any]] = field(default_factory=list)
    labels: list[tuple[Mapping[str, Any], int, int]] = field(
        default_factory=list
    )  # partition, offset
    positions: dict[Position, int] = field(default_factory=dict)


Sort = Literal["score", "age"]
Status = Literal["open", "labelled", "all"]


@dataclass(frozen=True)
class QueueQuery:
    """The queue's sort and filters, as the page's form sends them."""

    sort: Sort = "score"
    status: Status = "open"
    tiers: tuple[str, ...] = ("review", "decline")
    min_amount: float | None = None
    max_amount: float | None = None
    merchant_category: str | None = None
    limit: int = 200


@dataclass(frozen=True)
class Claim:
    transaction_id: str
    analyst_id: str
    claimed_us: int
    expires_us: int

    def held_by(self, analyst_id: str) -> bool:
        return self.analyst_id == analyst_id


@dataclass(frozen=True)
class Session:
    analyst_id: str
    csrf_token: str
    expires_us: int


def _token_hash(token: str) -> str:
    # Only hashes are stored: a copy of the file does not let anyone into a live session.
    return hashlib.sha256(token.encode()).hexdigest()


class ConsoleStore:
    """One connection shared by the ingest thread and the web handlers, one writer at a time."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._version = 0
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @property
    def version(self) -> int:
        """Grows with every change the queue shows (alerts, verdicts, claims): the live queue
        watches it."""
        return self._version

    @contextmanager
    def _write(self, *, queue_changes: bool = True) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            if queue_changes:
                self._version += 1

    def _rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, params))

    # -- reading the topics ------------------------------------------------------------------

    def positions(self) -> dict[Position, int]:
        rows = self._rows("SELECT topic, topic_partition, next_offset FROM positions")
        return {(row["topic"], row["topic_partition"]): row["next_offset"] for row in rows}

    def apply(self, batch: IngestBatch) -> None:
        """Store a batch's records and move its positions, all or nothing."""
        with self._write(queue_changes=bool(batch.alerts or batch.labels)) as db:
            for alert in batch.alerts:
                self._insert_alert(db, alert)
            for decision in batch.decisions:
                self._insert_decision(db, decision)
            for record, partition, offset in batch.labels:
                self._insert_label(db, record, partition, offset)
            db.executemany(
                "INSERT INTO positions VALUES (?, ?, ?) ON CONFLICT (topic, topic_partition) "
                "DO UPDATE SET next_offset = excluded.next_offset",
                [
                    (topic, partition, offset)
                    for (topic, partition), offset in batch.positions.items()
                ],
            )

    @staticmethod
    def _insert_alert(db: sqlite3.Connection, alert: Mapping[str, Any]) -> None:
        # The first alert of a transaction stays: its waiting time counts from then.
        db.execute(
            "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (transaction_id) DO NOTHING",
            (
                alert["transaction_id"],
                alert["card_id"],
                alert["customer_id"],
                alert.get("terminal_id", ""),
                alert.get("merchant_category", ""),
                alert["event_time"],
                micros(alert["event_time"]),
                alert["decided_at"],
                micros(alert["decided_at"]),
                float(alert["amount"]),
                float(alert["score"]),
                alert["decision"],
                str(alert["model_version"]),
                orjson.dumps(alert["reason_codes"]).decode(),
            ),
        )

    @staticmethod
    def _insert_decision(db: sqlite3.Connection, decision: Mapping[str, Any]) -> None:
        # A transaction decided again (at-least-once) keeps its first decision, like its alert.
        flagged = decision["decision"] != "approve"
        db.execute(
            "INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (transaction_id) DO NOTHING",
            (
                decision["transaction_id"],
                decision["card_id"],
                micros(decision["event_time"]),
                decision["event_time"],
                decision["features"].get("amount"),
                float(decision["score"]),
                decision["decision"],
                str(decision["model"]["version"]),
                orjson.dumps(decision).decode() if flagged else None,
            ),
        )

    @staticmethod
    def _insert_label(
        db: sqlite3.Connection, record: Mapping[str, Any], partition: int, offset: int
    ) -> None:
        row = (
            record["transaction_id"],
            record["label"],
            record["analyst_id"],
            record["labelled_at"],
            micros(record["labelled_at"]),
            record["source"],
            record.get("note"),
            partition,
            offset,
        )
        inserted = db.execute(
            "INSERT INTO labels (transaction_id, label, analyst_id, labelled_at, labelled_us, "
            "source, note, topic_partition, topic_offset) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (topic_partition, topic_offset) DO NOTHING",
            row,
        ).rowcount
        if inserted:
            db.execute(
                "INSERT INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (transaction_id) DO UPDATE SET label = excluded.label, "
                "analyst_id = excluded.analyst_id, labelled_at = excluded.labelled_at, "
                "labelled_us = excluded.labelled_us, source = excluded.source, "
                "note = excluded.note, topic_partition = excluded.topic_partition, "
                "topic_offset = excluded.topic_offset "
                "WHERE (excluded.labelled_us, excluded.topic_partition, excluded.topic_offset) "
                "> (verdicts.labelled_us, verdicts.topic_partition, verdicts.topic_offset)",
                row,
            )

    def record_label(self, record: Mapping[str, Any], partition: int, offset: int) -> None:
        """A label this console published, stored at once (reading it back from `feedback`
        later finds the same position and keeps it once); releases the alert's claim."""
        with self._write() as db:
            self._insert_label(db, record, partition, offset)
            db.execute(
                "DELETE FROM claims WHERE transaction_id = ? AND analyst_id = ?",
                (record["transaction_id"], record["analyst_id"]),
            )

    def prune(self, keep_days: int) -> int:
        """Drop approved decisions older than `keep_days` before the newest event time; they
        only serve the card's recent history. Returns how many went."""
        with self._write() as db:
            newest = db.execute("SELECT MAX(event_us) FROM decisions").fetchone()[0]
            if newest is None:
                return 0
            return db.execute(
                "DELETE FROM decisions WHERE tier = 'approve' AND event_us < ?",
                (newest - keep_days * DAY_US,),
            ).rowcount

    # -- the queue -----------------------------------------------------------------------

    def queue(self, query: QueueQuery, now_us: int) -> list[dict[str, Any]]:
        """Alerts matching `query`, with their verdict and live claim if any.

        sort "score": highest score first (the same score: longest waiting first);
        sort "age": longest waiting first."""
        where = ["1 = 1"]
        params: dict[str, Any] = {"now": now_us, "limit": query.limit}
        if query.status == "open":
            where.append("v.transaction_id IS NULL")
        elif query.status == "labelled":
            where.append("v.transaction_id IS NOT NULL")
        tiers = [tier for tier in query.tiers if tier in ("review", "decline")]
        where.append(f"a.tier IN ({', '.join(f':tier{i}' for i in range(len(tiers))) or 'NULL'})")
        params.update({f"tier{i}": tier for i, tier in enumerate(tiers)})
        if query.min_amount is not None:
            where.append("a.amount >= :min_amount")
            params["min_amount"] = query.min_amount
        if query.max_amount is not None:
            where.append("a.amount <= :max_amount")
            params["max_amount"] = query.max_amount
        if query.merchant_category:
            where.append("a.merchant_category = :mcc")
            params["mcc"] = query.merchant_category
        order = (
            "a.score DESC, a.decided_us ASC"
            if query.sort == "score"
            else "a.decided_us ASC, a.score DESC"
        )
        rows = self._rows(
            "SELECT a.transaction_id, a.card_id, a.terminal_id, a.merchant_category, "
            "a.event_time, a.decided_us, a.amount, a.score, a.tier, a.model_version, "
            "c.analyst_id AS claimed_by, v.label, v.analyst_id AS labelled_by "
            "FROM alerts a LEFT JOIN verdicts v ON v.transaction_id = a.transaction_id "
            "LEFT JOIN claims c ON c.transaction_id = a.transaction_id AND c.expires_us > :now "
            f"WHERE {' AND '.join(where)} ORDER BY {order}, a.transaction_id LIMIT :limit",
            params,
        )
        return [dict(row) for row in rows]

    def merchant_categories(self) -> list[str]:
        rows = self._rows("SELECT DISTINCT merchant_category FROM alerts ORDER BY 1")
        return [row[0] for row in rows if row[0]]

    def open_count(self) -> int:
        return int(
            self._rows(
                "SELECT COUNT(*) FROM alerts a LEFT JOIN verdicts v USING (transaction_id) "
                "WHERE v.transaction_id IS NULL"
            )[0][0]
        )

    # -- one alert -----------------------------------------------------------------------

    def alert(self, transaction_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM alerts WHERE transaction_id = ?", (transaction_id,))
        if not rows:
            return None
        alert = dict(rows[0])
        alert["reason_codes"] = orjson.loads(alert["reason_codes"])
        return alert

    def decision(self, transaction_id: str) -> dict[str, Any] | None:
        """The whole decision of a reviewed or declined transaction, as the scorer wrote it."""
        rows = self._rows(
            "SELECT record FROM decisions WHERE transaction_id = ? AND record IS NOT NULL",
            (transaction_id,),
        )
        return dict(orjson.loads(rows[0]["record"])) if rows else None

    def card_history(self, card_id: str, until_us: int, days: int = 30) -> list[dict[str, Any]]:
        """The card's decisions with event time in [until - days, until], newest first, with
        each one's verdict."""
        rows = self._rows(
            "SELECT d.transaction_id, d.event_time, d.amount, d.score, d.tier, d.model_version, "
            "v.label, v.source FROM decisions d "
            "LEFT JOIN verdicts v ON v.transaction_id = d.transaction_id "
            "WHERE d.card_id = ? AND d.event_us BETWEEN ? AND ? ORDER BY d.event_us DESC LIMIT 200",
            (card_id, until_us - days * DAY_US, until_us),
        )
        return [dict(row) for row in rows]

    def terminal_verdicts(self, terminal_id: str, until_us: int, days: int) -> dict[str, int]:
        """The terminal's alerts with event time in [until - days, until] by latest verdict:
        {"alerts", "fraud", "legit", "open"}."""
        row = self._rows(
            "SELECT COUNT(*) AS alerts, COALESCE(SUM(v.label = 'fraud'), 0) AS fraud, "
            "COALESCE(SUM(v.label = 'legit'), 0) AS legit, "
            "COALESCE(SUM(v.label IS NULL), 0) AS open "
            "FROM alerts a LEFT JOIN verdicts v ON v.transaction_id = a.transaction_id "
            "WHERE a.terminal_id = ? AND a.event_us BETWEEN ? AND ?",
            (terminal_id, until_us - days * DAY_US, until_us),
        )[0]
        return {key: int(row[key]) for key in ("alerts", "fraud", "legit", "open")}

    def verdict(self, transaction_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM verdicts WHERE transaction_id = ?", (transaction_id,))
        return dict(rows[0]) if rows else None

    def labels_of(self, transaction_id: str) -> list[dict[str, Any]]:
        """Every label of the transaction, latest first (the first is the verdict)."""
        rows = self._rows(
            "SELECT * FROM labels WHERE transaction_id = ? "
            "ORDER BY labelled_us DESC, topic_partition DESC, topic_offset DESC",
            (transaction_id,),
        )
        return [dict(row) for row in rows]

    # -- claims --------------------------------------------------------------------------

    def claim(self, transaction_id: str, analyst_id: str, now_us: int, minutes: float) -> Claim:
        """Give the alert to `analyst_id` until now + minutes, unless another analyst holds a
        live claim: then that claim is returned unchanged. Claiming again extends one's own."""
        expires = now_us + int(minutes * 60 * 1_000_000)
        with self._write() as db:
            row = db.execute(
                "SELECT * FROM claims WHERE transaction_id = ? AND expires_us > ?",
                (transaction_id, now_us),
            ).fetchone()
            if row is not None and row["analyst_id"] != analyst_id:
                return Claim(
                    transaction_id, row["analyst_id"], row["claimed_us"], row["expires_us"]
                )
            claimed = row["claimed_us"] if row is not None else now_us
            db.execute(
                "INSERT INTO claims VALUES (?, ?, ?, ?) ON CONFLICT (transaction_id) DO UPDATE "
                "SET analyst_id = excluded.analyst_id, claimed_us = excluded.claimed_us, "
                "expires_us = excluded.expires_us",
                (transaction_id, analyst_id, claimed, expires),
            )
            return Claim(transaction_id, analyst_id, claimed, expires)

    def claim_of(self, transaction_id: str, now_us: int) -> Claim | None:
        rows = self._rows(
            "SELECT * FROM claims WHERE transaction_id = ? AND expires_us > ?",
            (transaction_id, now_us),
        )
        if not rows:
            return None
        row = rows[0]
        return Claim(transaction_id, row["analyst_id"], row["claimed_us"], row["expires_us"])

    def release(self, transaction_id: str, analyst_id: str) -> bool:
        """Give up one's own claim; False when `analyst_id` held none."""
        with self._write() as db:
            return bool(
                db.execute(
                    "DELETE FROM claims WHERE transaction_id = ? AND analyst_id = ?",
                    (transaction_id, analyst_id),
                ).rowcount
            )

    # -- sessions ------------------------------------------------------------------------

    def create_session(self, analyst_id: str, now_us: int, hours: float) -> tuple[str, Session]:
        """A new session: (the cookie's token, the session with its CSRF token)."""
        token = secrets.token_urlsafe(32)
        session = Session(analyst_id, secrets.token_urlsafe(32), now_us + int(hours * 3.6e9))
        with self._write(queue_changes=False) as db:
            db.execute("DELETE FROM sessions WHERE expires_us <= ?", (now_us,))
            db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?)",
                (_token_hash(token), analyst_id, session.csrf_token, session.expires_us),
            )
        return token, session

    def session(self, token: str, now_us: int) -> Session | None:
        rows = self._rows(
            "SELECT * FROM sessions WHERE token_hash = ? AND expires_us > ?",
            (_token_hash(token), now_us),
        )
        if not rows:
            return None
        return Session(rows[0]["analyst_id"], rows[0]["csrf_token"], rows[0]["expires_us"])

    def end_session(self, token: str) -> None:
        with self._write(queue_changes=False) as db:
            db.execute("DELETE FROM sessions WHERE token_hash = ?", (_token_hash(token),))
