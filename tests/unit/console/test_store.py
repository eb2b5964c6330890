"""The console's store: queue ordering and filters, claiming, latest verdict wins, and resuming
from stored positions without losing or duplicating a record."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.store import DAY_US, ConsoleStore, IngestBatch, QueueQuery, micros
from tests.unit.console.records import a_decision, a_label, an_alert

NOON = micros("2026-06-01T12:00:00Z")
MINUTE = 60 * 1_000_000


@pytest.fixture
def store(tmp_path: Path) -> ConsoleStore:
    return ConsoleStore(tmp_path / "console.db")


def ids(rows: list[dict]) -> list[str]:
    return [row["transaction_id"] for row in rows]


def fill(store: ConsoleStore) -> None:
    """Four alerts: raised at 12:00-12:03 (wall clock), with these scores, tiers, amounts."""
    store.apply(
        IngestBatch(
            alerts=[
                an_alert("tx-a", 0.70, decided_at="2026-06-01T12:00:00Z", amount=50.0),
                an_alert("tx-b", 0.95, "decline", decided_at="2026-06-01T12:01:00Z", amount=900.0),
                an_alert("tx-c", 0.70, decided_at="2026-06-01T12:02:00Z", merchant_category="5944"),
                an_alert("tx-d", 0.99, "decline", decided_at="2026-06-01T12:03:00Z", amount=20.0),
            ]
        )
    )


def test_queue_sorts_by_score_or_by_waiting_time(store: ConsoleStore) -> None:
    fill(store)
    later = NOON + 10 * MINUTE
    # Highest score first; the same score: the one waiting longer first.
    assert ids(store.queue(QueueQuery(sort="score"), later)) == ["tx-d", "tx-b", "tx-a", "tx-c"]
    assert ids(store.queue(QueueQuery(sort="age"), later)) == ["tx-a", "tx-b", "tx-c", "tx-d"]


def test_queue_filters_by_tier_amount_and_merchant_category(store: ConsoleStore) -> None:
    fill(store)
    assert ids(store.queue(QueueQuery(tiers=("decline",)), NOON)) == ["tx-d", "tx-b"]
    assert ids(store.queue(QueueQuery(min_amount=100.0), NOON)) == ["tx-b", "tx-c"]
    assert ids(store.queue(QueueQuery(max_amount=50.0), NOON)) == ["tx-d", "tx-a"]
    assert ids(store.queue(QueueQuery(merchant_category="5944"), NOON)) == ["tx-c"]
    assert store.merchant_categories() == ["5411", "5944"]


def test_a_labelled_alert_leaves_the_open_queue_and_the_latest_label_wins(
    store: ConsoleStore,
) -> None:
    fill(store)
    store.apply(
        IngestBatch(
            labels=[
                (a_label("tx-b", "fraud", "alice", "2026-06-01T12:10:00Z"), 0, 5),
                # Later on the labels' clock but earlier in the topic: still the verdict.
                (a_label("tx-a", "legit", "bob", "2026-06-01T12:20:00Z"), 1, 3),
                (a_label("tx-a", "fraud", "alice", "2026-06-01T12:15:00Z"), 1, 4),
            ]
        )
    )
    assert ids(store.queue(QueueQuery(), NOON)) == ["tx-d", "tx-c"]
    assert ids(store.queue(QueueQuery(status="labelled"), NOON)) == ["tx-b", "tx-a"]
    assert store.open_count() == 2
    verdict = store.verdict("tx-a")
    assert verdict is not None and (verdict["label"], verdict["analyst_id"]) == ("legit", "bob")
    # A correction: later again, so it wins; same time, later position wins.
    store.record_label(a_label("tx-a", "fraud", "carol", "2026-06-01T12:30:00Z"), 0, 9)
    store.apply(
        IngestBatch(labels=[(a_label("tx-a", "legit", "dan", "2026-06-01T12:30:00Z"), 0, 10)])
    )
    assert store.verdict("tx-a")["analyst_id"] == "dan"  # type: ignore[index]
    assert [label["analyst_id"] for label in store.labels_of("tx-a")] == [
        "dan",
        "carol",
        "bob",
        "alice",
    ]


def test_claims_keep_an_alert_with_one_analyst_until_verdict_release_or_expiry(
    store: ConsoleStore,
) -> None:
    fill(store)
    mine = store.claim("tx-a", "alice", NOON, minutes=15)
    assert (mine.analyst_id, mine.expires_us) == ("alice", NOON + 15 * MINUTE)
    theirs = store.claim("tx-a", "bob", NOON + MINUTE, minutes=15)
    assert theirs == mine  # bob is told alice holds it
    rows = {row["transaction_id"]: row for row in store.queue(QueueQuery(), NOON + MINUTE)}
    assert rows["tx-a"]["claimed_by"] == "alice" and rows["tx-b"]["claimed_by"] is None
    # Claiming again extends one's own claim, from the same start.
    again = store.claim("tx-a", "alice", NOON + 5 * MINUTE, minutes=15)
    assert (again.claimed_us, again.expires_us) == (NOON, NOON + 20 * MINUTE)
    # Only the holder releases; then anyone may claim.
    assert not store.release("tx-a", "bob")
    assert store.release("tx-a", "alice")
    assert store.claim("tx-a", "bob", NOON + 6 * MINUTE, 15).analyst_id == "bob"
    # An expired claim is no claim.
    assert store.claim_of("tx-a", NOON + 22 * MINUTE) is None
    assert store.claim("tx-a", "carol", NOON + 22 * MINUTE, 15).analyst_id == "carol"
    # A verdict ends the claim.
    store.record_label(a_label("tx-a", "fraud", "carol", "2026-06-01T12:30:00Z"), 0, 1)
    assert store.claim_of("tx-a", NOON + 23 * MINUTE) is None


def test_a_restart_resumes_from_the_stored_positions_and_keeps_records_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "console.db"
    first = ConsoleStore(path)
    first.apply(
        IngestBatch(
            alerts=[an_alert("tx-a")],
            decisions=[a_decision("tx-a"), a_decision("tx-0", 0.01, "approve")],
            labels=[(a_label("tx-a", "fraud", "alice", "2026-06-01T12:10:00Z"), 2, 7)],
            positions={("alerts", 0): 1, ("decisions", 1): 2, ("feedback", 2): 8},
        )
    )
    first.close()
    second = ConsoleStore(path)
    assert second.positions() == {("alerts", 0): 1, ("decisions", 1): 2, ("feedback", 2): 8}
    # The same records again (a replay): kept once.
    second.apply(
        IngestBatch(
            alerts=[an_alert("tx-a", decided_at="2026-06-02T00:00:00Z")],
            decisions=[a_decision("tx-a")],
            labels=[(a_label("tx-a", "fraud", "alice", "2026-06-01T12:10:00Z"), 2, 7)],
            positions={("alerts", 0): 2},
        )
    )
    assert second.queue(QueueQuery(status="all"), NOON)[0]["decided_us"] == NOON
    assert len(second.labels_of("tx-a")) == 1
    assert len(second.card_history("card-0001", micros("2026-03-02T10:00:00Z"))) == 2
    assert second.positions()[("alerts", 0)] == 2


def test_a_failed_batch_stores_nothing_and_moves_no_position(store: ConsoleStore) -> None:
    broken = an_alert("tx-b")
    del broken["card_id"]
    with pytest.raises(KeyError):
        store.apply(IngestBatch(alerts=[an_alert("tx-a"), broken], positions={("alerts", 0): 2}))
    assert store.positions() == {} and store.alert("tx-a") is None


def test_card_history_covers_30_days_of_decisions_newest_first(store: ConsoleStore) -> None:
    at = micros("2026-03-31T10:00:00Z")
    store.apply(
        IngestBatch(
            decisions=[
                a_decision("tx-old", 0.1, "approve", event_time="2026-02-28T09:00:00Z"),
                a_decision("tx-1", 0.1, "approve", event_time="2026-03-05T09:00:00Z"),
                a_decision("tx-2", 0.8, "review", event_time="2026-03-31T10:00:00Z"),
                a_decision("tx-other", 0.1, "approve", card_id="card-0002"),
                a_decision("tx-later", 0.1, "approve", event_time="2026-04-01T10:00:00Z"),
            ]
        )
    )
    assert ids(store.card_history("card-0001", at)) == ["tx-2", "tx-1"]
    assert store.decision("tx-2")["features"]["card_count_1h"] == 7.0  # type: ignore[index]
    assert store.decision("tx-1") is None  # approvals keep no feature vector
    assert store.prune(keep_days=30) == 1  # tx-old: older than 30 days before the newest
    assert at - micros("2026-02-28T09:00:00Z") > 30 * DAY_US


def test_terminal_verdicts_count_its_alerts_by_latest_verdict(store: ConsoleStore) -> None:
    store.apply(
        IngestBatch(
            alerts=[
                an_alert("tx-1", event_time="2026-03-20T10:00:00Z"),
                an_alert("tx-2", event_time="2026-03-25T10:00:00Z"),
                an_alert("tx-3", event_time="2026-03-26T10:00:00Z"),
                an_alert("tx-4", event_time="2026-01-01T10:00:00Z"),  # outside 28 days
                an_alert("tx-5", event_time="2026-03-26T10:00:00Z", terminal_id="term-02"),
            ],
            labels=[
                (a_label("tx-1", "fraud", "alice", "2026-06-01T12:00:00Z"), 0, 1),
                (a_label("tx-2", "legit", "alice", "2026-06-01T12:00:00Z"), 0, 2),
            ],
        )
    )
    until = micros("2026-03-26T10:00:00Z")
    assert store.terminal_verdicts("term-01", until, 28) == {
        "alerts": 3,
        "fraud": 1,
        "legit": 1,
        "open": 1,
    }


def test_sessions_expire_end_and_keep_only_a_hash_of_the_token(store: ConsoleStore) -> None:
    token, session = store.create_session("alice", NOON, hours=1)
    assert store.session(token, NOON + MINUTE) == session
    assert store.session(token, NOON + 61 * MINUTE) is None
    assert store.session("not-a-token", NOON) is None
    rows = store._rows("SELECT token_hash FROM sessions")
    assert token not in {row[0] for row in rows}
    store.end_session(token)
    assert store.session(token, NOON + MINUTE) is None
