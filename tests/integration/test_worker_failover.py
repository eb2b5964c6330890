"""Kill one of two workers: SIGKILL mid-stream, the survivor takes over its partitions.

Every transaction still gets a decision. Delivery is at least once: a transaction may be
decided twice when its decision was written but its offset not yet committed as the group
rebalanced after the kill (the killed worker's in-flight events, or the survivor's own, since
a rebalance revokes every partition). The second copy is then made after the kill and must
carry the very same feature vector and score (the feature store records each transaction's
features and hands them back instead of counting it again), and the aggregates in Redis must
be those of a clean run over the same events.
"""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest

from schemas import validator
from stream.edge import Admitted, Source, admit
from stream.features import RedisFeatureStore, canonical_card_state
from tests.support.processes import wait_healthy
from tests.support.worker import (
    BackgroundTraffic,
    decisions_by_transaction,
    group_assignment,
    scrape,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DECIDED = 'fraud_transactions_total{outcome="decided"}'


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _all_decisions(consume_raw, topics: dict[str, str], expected_ids: set[str]) -> list[dict]:
    """Read the decisions until every expected transaction has one (duplicates included)."""
    deadline = time.monotonic() + 90
    while True:
        records = consume_raw(topics["decisions"], count=len(expected_ids))
        decisions = [orjson.loads(r.value) for r in records]
        missing = expected_ids - {d["transaction_id"] for d in decisions}
        if not missing or time.monotonic() > deadline:
            assert not missing, (
                f"{len(missing)} transactions never decided, e.g. {min(missing)}; "
                f"dead letters: {_dead_letters(consume_raw, topics, missing)}"
            )
            return decisions
        time.sleep(1)


def _dead_letters(consume_raw, topics: dict[str, str], ids: set[str]) -> list[str]:
    """The reason and error of each dead letter holding one of `ids`."""
    found = []
    for record in consume_raw(topics["dead_letter"], timeout_s=5):
        letter = orjson.loads(record.value)
        if any(tx in letter["raw"] for tx in ids):
            found.append(f"{letter['reason']}: {letter['error']}")
    return found


def _events_in_time_order(records: list[Any]) -> list[dict[str, Any]]:
    """The admitted events of the input topic, oldest first (a card's events keep their order:
    one partition, stamped when sent)."""
    from fraud.settings import Settings
    from stream.edge import PanKey

    key = PanKey.from_settings(Settings())
    check = validator("transaction")
    ordered = sorted(
        records, key=lambda r: (orjson.loads(r.value)["timestamp"], r.partition, r.offset)
    )
    events = []
    for record in ordered:
        result = admit(
            record.value, Source(record.topic, record.partition, record.offset), check, key
        )
        assert isinstance(result, Admitted), result
        events.append(result.event)
    return events


def _same(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and a == b)


def _state(client: Any, store: RedisFeatureStore) -> dict[str, Any]:
    """The store's card histories and terminal sets, by key without the prefix (card states
    without their version, which is new at every write, and as a state rewritten at every batch
    holds them: a write appends to a state, and how often it rewrites it depends on how events
    were batched)."""
    state: dict[str, Any] = {}
    for key in client.scan_iter(f"{store.key_prefix}*", count=1000):
        name = key.decode()[len(store.key_prefix) :]  # "{c3}:card:<card>"
        if ":card:" in name:
            state[name] = canonical_card_state(client.get(key)[8:])
        elif ":term:" in name:
            state[name] = client.zrange(key, 0, -1, withscores=True)
    assert state, f"nothing under {store.key_prefix}"
    return state


def test_survivor_takes_over_and_aggregates_match_a_clean_run(
    worker_env, consume_raw, redis_client
):
    # A dead member is noticed after 6 s (the broker's minimum).
    worker_env.extra.update({"FRAUD_SESSION_TIMEOUT_S": "6"})
    topics, bootstrap = worker_env.topics, worker_env.stack.bootstrap
    members = lambda: group_assignment(bootstrap, worker_env.group, topics["transactions"])  # noqa: E731

    with (
        worker_env.worker("doomed", wait=False) as doomed,
        worker_env.worker("survivor", wait=False) as survivor,
    ):
        wait_healthy(doomed)
        wait_healthy(survivor)
        wait_until(
            lambda: sorted(map(len, members().values())) == [2, 2],
            60,
            "two members holding two partitions each",
        )
        with BackgroundTraffic(worker_env, rate=200) as traffic:
            wait_until(
                lambda: min(scrape(doomed)[DECIDED], scrape(survivor)[DECIDED]) >= 100,
                60,
                "both workers deciding",
            )
            doomed.kill(signal.SIGKILL)
            killed_at = _now()
            wait_until(
                lambda: list(members().values()) == [[0, 1, 2, 3]],
                60,
                "the survivor holding all four partitions",
            )
            taken_over = scrape(survivor)[DECIDED]
            wait_until(
                lambda: scrape(survivor)[DECIDED] >= taken_over + 200,
                60,
                "decisions after the takeover",
            )
            report = traffic.stop()
        inputs = consume_raw(topics["transactions"], count=report.sent)
        assert len(inputs) == report.sent
        expected = {orjson.loads(r.value)["transaction_id"] for r in inputs}
        decisions = _all_decisions(consume_raw, topics, expected)
        assert survivor.popen.poll() is None

    # Each transaction decided; a second decision only from the rebalance after the kill.
    by_id = decisions_by_transaction(sorted(decisions, key=lambda d: d["decided_at"]), expected)
    partition_of = {orjson.loads(r.value)["transaction_id"]: r.partition for r in inputs}
    after_kill = {
        partition_of[tx] for tx, copies in by_id.items() if copies[-1]["decided_at"] > killed_at
    }
    assert after_kill == {0, 1, 2, 3}, "the survivor must decide on every partition after the kill"
    repeated = {tx: copies for tx, copies in by_id.items() if len(copies) > 1}
    for tx, copies in repeated.items():
        assert len(copies) == 2, (tx, len(copies))
        first, again = copies
        assert again["decided_at"] > killed_at, tx
        assert again["features"] == first["features"], tx
        assert again["score"] == first["score"] and again["decision"] == first["decision"]

    # The aggregates: the worker's prefix against a clean run over the same events, in time order.
    events = _events_in_time_order(inputs)
    live = RedisFeatureStore(redis_client, worker_env.redis_prefix)
    clean = RedisFeatureStore(redis_client, f"{worker_env.redis_prefix}-clean")
    try:
        clean_features = []
        for start in range(0, len(events), 500):
            clean_features += clean.process_batch(events[start : start + 500])
        live_state = _state(redis_client, live)
        # Seen before: the live store hands back each transaction's recorded features and
        # changes nothing.
        recorded = live.process_batch(events)
        assert _state(redis_client, live) == live_state
        clean_state = _state(redis_client, clean)
    finally:
        clean.clear()

    assert live_state.keys() == clean_state.keys()
    assert live_state == clean_state, "card histories or terminal sets differ from a clean run"
    mismatched = []
    # Event and card features are exact: a card's events are on one partition, in order.
    # Terminal counts see other cards' partitions, which may lag (the killed worker's did for
    # seconds): live they can miss an earlier event, never count one twice. Terminal fraud
    # rates follow those counts (and no label arrived here), so they are not compared.
    for event, kept, ideal in zip(events, recorded, clean_features, strict=True):
        for name, value in kept.items():
            if name.startswith("terminal_count_"):
                if value is not None and ideal[name] is not None and value > ideal[name]:
                    mismatched.append((event["transaction_id"], name, value, ideal[name]))
            elif not name.startswith("terminal_") and not _same(value, ideal[name]):
                mismatched.append((event["transaction_id"], name, value, ideal[name]))
    assert not mismatched, mismatched[:10]
    # Every decision, first or repeated, carries the features recorded for its transaction.
    recorded_by_id = {e["transaction_id"]: f for e, f in zip(events, recorded, strict=True)}
    for tx, copies in by_id.items():
        for copy in copies:
            kept = recorded_by_id[tx]
            assert all(_same(v, kept[k]) for k, v in copy["features"].items()), tx
    assert np.isfinite([d["score"] for d in decisions]).all()
