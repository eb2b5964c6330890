"""The chaos suite: steady traffic through three workers on the clustered stack (three Kafka
nodes, a Redis Cluster), faults injected while it flows, and a verifier that reads every topic
back and proves nothing was lost or counted twice (`fraud chaos`, `make chaos`).

    stack = ClusterStack(state_dir, ClusterPorts.from_env()); stack.up()
    run = run_chaos(settings, ChaosOptions(rate=150, plan=SHORT_PLAN), stack)
    run.failures                       # [] when the promise held
    write_report(run.document, out)    # JSON; render(run.document, console) prints the table

`stack` drives ops/cluster.sh; `redis_target` is where the feature state lives (the cluster, or
one redis-server for a store not yet able to use the cluster); `traffic` sends at a fixed rate
and logs every acknowledgement; `workers` starts, kills, freezes and resumes `fraud worker`
processes; `faults` injects each fault; `verify` (pure) and `aggregates` (the replay through
InMemoryFeatureStore, probes of the live store) draw the verdict; `report` writes and prints it.
"""

from bench.chaos.faults import FAULTS, FULL_PLAN, SHORT_PLAN
from bench.chaos.report import render, write_report
from bench.chaos.run import ChaosOptions, ChaosRun, run_chaos
from bench.chaos.stack import ClusterPorts, ClusterStack

__all__ = [
    "FAULTS",
    "FULL_PLAN",
    "SHORT_PLAN",
    "ChaosOptions",
    "ChaosRun",
    "ClusterPorts",
    "ClusterStack",
    "render",
    "run_chaos",
    "write_report",
]
