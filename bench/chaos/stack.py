"""The clustered stack of ops/cluster.sh, driven from Python: bring it up and down, kill and
restart single nodes, and answer what a fault needs to know (which broker leads the most
partitions, which Redis nodes are primaries, whether every replica is back in sync).

    stack = ClusterStack(state_dir, ClusterPorts.from_env())
    stack.up()                                  # idempotent; formats / creates on first use
    node = stack.broker_leading_most(topics)    # 1..3
    stack.kill_broker(node); stack.start_broker(node); stack.wait_in_sync(topics)
    stack.kill_redis(port); stack.wait_redis_serving(); stack.start_redis(port)

Every node is stopped only through the pid files of ops/cluster.sh, never by name.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraud.errors import ServiceUnavailableError
from fraud.settings import PROJECT_ROOT, KafkaConnection

OPS = PROJECT_ROOT / "ops" / "cluster.sh"
KAFKA_NODES = (1, 2, 3)
REDIS_NODES = 6


@dataclass(frozen=True)
class ClusterPorts:
    """The first port of each consecutive block (see ops/cluster.sh); Redis also needs each
    node's port + 10000 (the cluster bus)."""

    kafka: int = 29092
    kafka_controller: int = 29192
    redis: int = 7000

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ClusterPorts:
        defaults = cls()
        return cls(
            int(env.get("FRAUD_CLUSTER_KAFKA_PORT", defaults.kafka)),
            int(env.get("FRAUD_CLUSTER_KAFKA_CONTROLLER_PORT", defaults.kafka_controller)),
            int(env.get("FRAUD_CLUSTER_REDIS_PORT", defaults.redis)),
        )

    def env(self) -> dict[str, str]:
        return {
            "FRAUD_CLUSTER_KAFKA_PORT": str(self.kafka),
            "FRAUD_CLUSTER_KAFKA_CONTROLLER_PORT": str(self.kafka_controller),
            "FRAUD_CLUSTER_REDIS_PORT": str(self.redis),
        }

    def kafka_port(self, node: int) -> int:
        return self.kafka + node - 1

    @property
    def redis_ports(self) -> list[int]:
        return [self.redis + i for i in range(REDIS_NODES)]

    def all_ports(self) -> list[int]:
        """Every port the stack listens on."""
        kafka = [self.kafka_port(n) for n in KAFKA_NODES]
        controllers = [self.kafka_controller + n - 1 for n in KAFKA_NODES]
        return [*kafka, *controllers, *self.redis_ports, *(p + 10000 for p in self.redis_ports)]


class ClusterStack:
    """Three Kafka nodes and a six-node Redis Cluster whose state lives under `state_dir`."""

    def __init__(
        self, state_dir: Path, ports: ClusterPorts, env: Mapping[str, str] | None = None
    ) -> None:
        self.state_dir = state_dir
        self.ports = ports
        self._env = {**os.environ, **ports.env(), "FRAUD_STATE_DIR": str(state_dir), **(env or {})}

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.ports.kafka_port(n)}" for n in KAFKA_NODES)

    @property
    def connection(self) -> KafkaConnection:
        return KafkaConnection(bootstrap=self.bootstrap)

    @property
    def redis_url(self) -> str:
        """Any node's address: a cluster client finds the others from it."""
        return f"redis://127.0.0.1:{self.ports.redis}/0"

    def _ops(self, *args: str, timeout_s: float = 300) -> str:
        result = subprocess.run(
            [str(OPS), *args],
            env=self._env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceUnavailableError(
                f"ops/cluster.sh {' '.join(args)} failed (exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr)[-3000:]}"
            )
        return result.stdout

    def up(self) -> str:
        return self._ops("up")

    def down(self, wipe: bool = False) -> str:
        return self._ops("down", *(["--wipe"] if wipe else []))

    def exports(self) -> str:
        """`export NAME=value` lines that point the project at this stack."""
        return self._ops("env")

    def is_running(self) -> bool:
        """Every node's pid file names a live process."""
        pids = self.state_dir / "pids"
        names = [f"cluster-kafka-{n}" for n in KAFKA_NODES]
        names += [f"cluster-redis-{p}" for p in self.ports.redis_ports]
        return all(_alive(pids / f"{name}.pid") for name in names)

    def kill_broker(self, node: int) -> None:
        self._ops("kill", "kafka", str(node))

    def start_broker(self, node: int) -> None:
        self._ops("start", "kafka", str(node))

    def kill_redis(self, port: int) -> None:
        self._ops("kill", "redis", str(port))

    def start_redis(self, port: int) -> None:
        self._ops("start", "redis", str(port))

    # --- Kafka -------------------------------------------------------------------------------

    def _describe(self, topics: Iterable[str]) -> list[Any]:
        """Partition metadata (leader, replicas, in-sync replicas) of `topics`."""
        from stream.kafka_io import make_admin

        admin = make_admin(self.connection)  # referenced until its answer is in
        metadata = admin.list_topics(timeout=10)
        return [
            partition
            for name in topics
            if name in metadata.topics
            for partition in metadata.topics[name].partitions.values()
        ]

    def partition_leaders(self, topics: Iterable[str]) -> Counter[int]:
        """How many partitions of `topics` each broker leads."""
        return Counter(p.leader for p in self._describe(topics) if p.leader >= 0)

    def broker_leading_most(self, topics: Iterable[str]) -> int:
        leaders = self.partition_leaders(topics)
        if not leaders:
            raise ServiceUnavailableError("no partition of the run's topics has a leader")
        return leaders.most_common(1)[0][0]

    def wait_in_sync(self, topics: Iterable[str], timeout_s: float = 120) -> float:
        """Wait until every partition of `topics` has all three replicas in sync; the seconds."""
        names = list(topics)
        began = time.monotonic()
        while time.monotonic() - began < timeout_s:
            try:
                partitions = self._describe(names)
                if partitions and all(len(p.isrs) == len(KAFKA_NODES) for p in partitions):
                    return time.monotonic() - began
            except Exception:  # noqa: BLE001 - metadata unavailable mid-failover: ask again
                pass
            time.sleep(0.5)
        raise ServiceUnavailableError(f"replicas of {names} not back in sync within {timeout_s} s")

    # --- Redis Cluster -----------------------------------------------------------------------

    def redis_roles(self) -> dict[int, str]:
        """Port -> "master" or "slave" for every node that answers."""
        import redis

        roles = {}
        for port in self.ports.redis_ports:
            try:
                with redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=0.5) as node:
                    roles[port] = node.execute_command("ROLE")[0].decode()
            except redis.RedisError:
                continue
        return roles

    def redis_primary_with_most_keys(self) -> int:
        import redis

        sizes = {}
        for port, role in self.redis_roles().items():
            if role == "master":
                with redis.Redis(port=port, socket_timeout=1) as node:
                    sizes[port] = int(node.dbsize())
        if not sizes:
            raise ServiceUnavailableError("no Redis Cluster primary answers")
        return max(sizes, key=lambda port: sizes[port])

    def wait_redis_serving(self, timeout_s: float = 60) -> float:
        """Wait until the surviving nodes say cluster_state:ok with every slot served (after a
        primary died: its replica was promoted); returns the seconds."""
        import redis

        began = time.monotonic()
        while time.monotonic() - began < timeout_s:
            for port in self.redis_roles():
                try:
                    with redis.Redis(port=port, socket_timeout=1) as node:
                        info = node.cluster("info")
                except redis.RedisError:
                    continue
                if info.get("cluster_state") == "ok" and int(info["cluster_slots_ok"]) == 16384:
                    return time.monotonic() - began
                break
            time.sleep(0.1)
        raise ServiceUnavailableError(f"Redis Cluster not serving every slot within {timeout_s} s")


def _alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True
