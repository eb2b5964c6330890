"""Redis outage and recovery: the worker's own redis-server stops mid-stream and starts again.

The worker must neither crash nor stall: while Redis is away it decides with default
aggregates (degraded=true, counted in metrics), and once Redis answers again it goes back to
full features by itself. Every transaction gets exactly one decision throughout.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from tests.integration.worker_support import BackgroundTraffic, scrape, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DECIDED = 'fraud_transactions_total{outcome="decided"}'
DEGRADED = "fraud_degraded_decisions_total"
REDIS_ERRORS = "fraud_redis_errors_total"
RETRY_S = 0.5


def _now() -> str:
    """The decisions' decided_at format, so that times compare as strings."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _later(iso: str, seconds: float) -> str:
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00")) + timedelta(seconds=seconds)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def test_redis_outage_degrades_then_recovers_without_losing_a_transaction(
    worker_env, private_redis, consume_raw
):
    redis_server = private_redis()
    worker_env.extra.update({"REDIS_URL": redis_server.url, "FRAUD_REDIS_RETRY_S": str(RETRY_S)})

    with worker_env.worker() as worker, BackgroundTraffic(worker_env, rate=300) as traffic:
        wait_until(lambda: scrape(worker)[DECIDED] >= 300, 60, "300 decisions with Redis up")
        before = scrape(worker)

        redis_server.stop()
        stopped_at = _now()
        wait_until(lambda: scrape(worker)[DEGRADED] >= 300, 60, "300 degraded decisions")
        during = scrape(worker)

        redis_server.start()
        restarted_at = _now()
        at_restart = scrape(worker)
        wait_until(
            lambda: (
                scrape(worker)[DECIDED] - scrape(worker)[DEGRADED]
                >= at_restart[DECIDED] - at_restart[DEGRADED] + 300
            ),
            60,
            "300 full-feature decisions after Redis came back",
        )
        assert traffic.running, "traffic must flow through the outage and the recovery"
        report = traffic.stop()
        records = consume_raw(worker_env.topics["decisions"], count=report.valid)
        after = scrape(worker)
        assert worker.popen.poll() is None

    decisions = sorted((orjson.loads(r.value) for r in records), key=lambda d: d["decided_at"])
    per_id = Counter(d["transaction_id"] for d in decisions)
    assert len(per_id) == report.valid == report.sent
    assert max(per_id.values()) == 1, "a transaction was decided twice"

    # Metrics: nothing degraded before the outage; degraded decisions and Redis errors grow
    # during it; the degraded counter is exactly the number of degraded decisions.
    degraded = [d for d in decisions if d["degraded"]]
    assert before[DEGRADED] == 0 and before[REDIS_ERRORS] == 0
    assert during[DEGRADED] >= 300 and during[REDIS_ERRORS] >= 1
    assert after[DEGRADED] == len(degraded) >= during[DEGRADED]
    assert after[REDIS_ERRORS] >= during[REDIS_ERRORS]

    # In decision order: full, then degraded, then full again, each phase one run.
    phases = [flag for flag, _ in itertools.groupby(d["degraded"] for d in decisions)]
    assert phases == [False, True, False], phases
    assert degraded[0]["decided_at"] >= stopped_at
    # Back to full features within a retry interval (plus a slow batch) of Redis answering.
    assert degraded[-1]["decided_at"] <= _later(restarted_at, RETRY_S + 5)
    # Degraded decisions carry the no-history defaults: the card's own 1 h count is zero.
    assert {d["features"]["card_count_1h"] for d in degraded} == {0.0}
    assert max(d["features"]["card_count_30d"] for d in decisions if not d["degraded"]) > 0
