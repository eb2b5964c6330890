"""The clustered stack for tests: ops/cluster.sh (three Kafka nodes, a six-node Redis Cluster) as
local processes on free ports, its state in a temporary folder, stopped and wiped afterwards.

Ports are taken from FRAUD_TEST_CLUSTER_KAFKA_PORTS (default 29000-29999: six in a row, clients
then controllers) and FRAUD_TEST_CLUSTER_REDIS_PORTS (default 27000-27999: six in a row, each
with its cluster bus port + 10000 free too). The Kafka jars are the ones `make services` keeps
in .state/kafka (fetched there by the first start when missing).
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.chaos import ClusterPorts, ClusterStack
from tests.support.stack import ROOT, kafka_version


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _block(variable: str, default: str, ports_of: Callable[[int], Iterable[int]]) -> int:
    """The first base in the range whose ports (ports_of(base)) are all free."""
    low, high = (int(part) for part in os.environ.get(variable, default).split("-"))
    for base in range(low, high, 10):
        if all(_free(port) for port in ports_of(base)):
            return base
    raise RuntimeError(f"no free ports for the clustered stack in {variable}={low}-{high}")


def free_cluster_ports() -> ClusterPorts:
    kafka = _block("FRAUD_TEST_CLUSTER_KAFKA_PORTS", "29000-29999", lambda b: range(b, b + 6))
    redis = _block(
        "FRAUD_TEST_CLUSTER_REDIS_PORTS",
        "27000-27999",
        lambda b: [*range(b, b + 6), *range(b + 10000, b + 10006)],
    )
    return ClusterPorts(kafka=kafka, kafka_controller=kafka + 3, redis=redis)


def require_cluster_tools() -> None:
    missing = [tool for tool in ("java", "redis-server", "redis-cli") if not shutil.which(tool)]
    libs = ROOT / ".state" / "kafka" / f"libs-{kafka_version()}"
    if not (libs / ".complete").exists() and not shutil.which("mvn"):
        missing.append("mvn (or the Kafka jars in .state/kafka)")
    if missing:
        pytest.skip(f"the clustered stack needs {', '.join(missing)} (.ci/run installs them)")


@contextmanager
def cluster_stack(folder: Path) -> Iterator[ClusterStack]:
    """Up on free ports with its state under `folder`; down and wiped at exit."""
    require_cluster_tools()
    libs = ROOT / ".state" / "kafka" / f"libs-{kafka_version()}"
    stack = ClusterStack(folder, free_cluster_ports(), env={"FRAUD_KAFKA_LIBS": str(libs)})
    try:
        stack.up()
        yield stack
    finally:
        stack.down(wipe=True)
