"""The chaos suite's short plan on the clustered stack: steady traffic through three workers
while a worker is SIGKILLed and restarted, the Kafka node leading the most partitions is killed
and restarted, a Redis primary dies (a single Redis while the store cannot use the cluster),
a worker freezes past its session timeout and wakes up, and the group scales 1 -> 3 -> 1.

Every transaction the broker acknowledged gets a decision, repeats carry the features of the
first decision, the features served and the final aggregates equal a replay of the sent events,
and no fault produces a dead letter. The figures per fault go to the test artifacts
(chaos-*.json); `make chaos` runs the full plan.
"""

from __future__ import annotations

import pytest

from bench.chaos import SHORT_PLAN, ChaosOptions, ClusterStack, run_chaos, write_report
from fraud.settings import Settings
from tests.support.browser import artifacts_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_nothing_is_lost_or_counted_twice_under_faults(cluster: ClusterStack, champion) -> None:
    options = ChaosOptions(
        rate=100,
        plan=SHORT_PLAN,
        settle_s=3,
        broker_down_s=12,
        state_dir=champion.state_dir,
        out_dir=artifacts_dir(),
    )
    run = run_chaos(Settings(), options, cluster, say=lambda _: None)
    report = write_report(run.document, artifacts_dir())
    totals, phases = run.document["totals"], run.document["phases"]

    assert run.failures == [], f"{run.failures}; see {report}"
    assert [p["name"] for p in phases] == ["steady", *SHORT_PLAN]
    assert totals["acknowledged"] == totals["sent"] > 0
    assert totals["lost"] == 0 and totals["missing_from_topic"] == 0
    assert totals["decided"] == totals["sent"]
    assert totals["duplicates_with_other_features"] == 0
    # Every first decision made with the store has the replay's features.
    assert totals["served"]["same"] == totals["decided"] - totals["degraded"]
    aggregates = totals["aggregates"]
    assert aggregates["cards"] > 100 and aggregates["terminals"] > 100
    assert aggregates["cards_differing"] == aggregates["terminals_differing"] == 0
    assert aggregates["double_counted"] == aggregates["missed"] == 0
    assert aggregates["records_differing"] == 0
    # Each fault happened under traffic and the system came back from it.
    for phase in phases[1:]:
        assert phase["recovered_after_s"] is not None, phase
        assert phase["decided_tx_s"] > 0 and not phase["notes"], phase
    assert [p["workers_after"] for p in phases] == [1, 3, 3, 3, 3, 3, 1]
