"""Redis outage and recovery: the worker's own redis-server stops mid-stream and starts again,
then fills up (maxmemory: writes refused with an error reply) and is relieved.

The worker must neither crash nor stall: while Redis is away or failing it decides with
default aggregates (degraded=true, counted in metrics), and once Redis answers again it goes
back to full features by itself and folds the transactions it decided without Redis into the
aggregates. Every transaction gets exactly one decision throughout.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from tests.support.worker import BackgroundTraffic, scrape, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DECIDED = 'fraud_transactions_total{outcome="decided"}'
DEGRADED = "fraud_degraded_decisions_total"
REDIS_ERRORS = "fraud_redis_errors_total"
BACKFILLED = "fraud_degraded_backfilled_total"
BACKFILL_DROPPED = "fraud_degraded_backfill_dropped_total"
RETRY_S = 0.5
PHASE = 200  # decisions to see in each phase before moving on


def _now() -> str:
    """The decisions' decided_at format, so that times compare as strings."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _later(iso: str, seconds: float) -> str:
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00")) + timedelta(seconds=seconds)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _full_since(consume_raw, topic: str, since: str) -> int:
    """Full (not degraded) decisions on the topic decided at or after `since`. Read from the
    decisions themselves: the metrics count a degraded batch at its aggregation and a decided
    one at its delivery, so decided minus degraded would pass a degraded batch still in flight
    for full decisions (the worker behind, as on a loaded machine)."""
    decisions = (orjson.loads(record.value) for record in consume_raw(topic))
    return sum(1 for d in decisions if d["decided_at"] >= since and not d["degraded"])


def test_redis_outage_degrades_then_recovers_without_losing_a_transaction(
    worker_env, private_redis, consume_raw
):
    import redis

    redis_server = private_redis()
    worker_env.extra.update({"REDIS_URL": redis_server.url, "FRAUD_REDIS_RETRY_S": str(RETRY_S)})

    with worker_env.worker() as worker, BackgroundTraffic(worker_env, rate=300) as traffic:
        wait_until(lambda: scrape(worker)[DECIDED] >= PHASE, 60, "decisions with Redis up")
        before = scrape(worker)

        stopped_at = _now()
        redis_server.stop()  # outage: nothing answers
        wait_until(lambda: scrape(worker)[DEGRADED] >= PHASE, 60, "degraded decisions")
        during = scrape(worker)

        decisions_topic = worker_env.topics["decisions"]
        redis_server.start()
        restarted_at = _now()
        wait_until(
            lambda: _full_since(consume_raw, decisions_topic, restarted_at) >= PHASE,
            60,
            "full after restart",
        )

        # Redis answers but refuses writes (memory full): an error reply, not a lost connection.
        with redis.Redis.from_url(redis_server.url) as admin:
            filled_at = _now()
            admin.config_set("maxmemory", 1)
            at_full = scrape(worker)[DEGRADED]
            wait_until(
                lambda: scrape(worker)[DEGRADED] >= at_full + PHASE, 60, "degraded when full"
            )
            admin.config_set("maxmemory", 0)
        relieved_at = _now()
        wait_until(
            lambda: _full_since(consume_raw, decisions_topic, relieved_at) >= PHASE,
            60,
            "full after relief",
        )

        assert traffic.running, "traffic must flow through the outages and the recoveries"
        report = traffic.stop()
        records = consume_raw(decisions_topic, count=report.valid)
        dead = consume_raw(worker_env.topics["dead_letter"])
        after = scrape(worker)
        assert worker.popen.poll() is None
        with redis.Redis.from_url(redis_server.url) as client:
            recorded = sum(1 for _ in client.scan_iter(f"{worker_env.redis_prefix}*:tx:*", 1000))

    decisions = sorted((orjson.loads(r.value) for r in records), key=lambda d: d["decided_at"])
    per_id = Counter(d["transaction_id"] for d in decisions)
    assert not dead, [orjson.loads(r.value)["error"] for r in dead[:3]]
    assert len(per_id) == report.valid == report.sent
    assert max(per_id.values()) == 1, "a transaction was decided twice"

    # Metrics: nothing degraded before the outage; degraded decisions and Redis errors grow
    # during it; the degraded counter is exactly the number of degraded decisions.
    degraded = [d for d in decisions if d["degraded"]]
    assert before[DEGRADED] == 0 and before[REDIS_ERRORS] == 0
    assert during[DEGRADED] >= PHASE and during[REDIS_ERRORS] >= 1
    assert after[DEGRADED] == len(degraded) >= during[DEGRADED] + PHASE
    assert after[REDIS_ERRORS] > during[REDIS_ERRORS]

    # In decision order: full, degraded, full, degraded, full; each phase one run, each
    # degraded run inside its incident (plus a retry interval and a slow batch).
    runs = [
        (flag, [d["decided_at"] for d in group])
        for flag, group in itertools.groupby(decisions, key=lambda d: d["degraded"])
    ]
    assert [flag for flag, _ in runs] == [False, True, False, True, False], [
        (flag, len(times), times[0], times[-1]) for flag, times in runs
    ]
    (_, stopped), (_, filled) = runs[1], runs[3]
    assert stopped_at <= stopped[0] and stopped[-1] <= _later(restarted_at, RETRY_S + 5)
    assert filled_at <= filled[0] and filled[-1] <= _later(relieved_at, RETRY_S + 5)
    # Once Redis was back, the degraded transactions were added to the aggregates: the store
    # holds a record of every transaction.
    assert after[BACKFILLED] == len(degraded) and after[BACKFILL_DROPPED] == 0
    assert recorded == report.valid
    # Degraded decisions carry the no-history defaults: the card's own 1 h count is zero.
    assert {d["features"]["card_count_1h"] for d in degraded} == {0.0}
    assert max(d["features"]["card_count_30d"] for d in decisions if not d["degraded"]) > 0
