"""The faults of a chaos run, each injected while traffic flows, and the waits between them.

    scale-out    start workers until three are in the group (the run starts with one)
    worker-kill  SIGKILL a worker (in turn), restart it at once, as a supervisor would
    broker-kill  kill -9 the Kafka node leading the most of the run's partitions; restart it
                 after `broker_down_s` and wait until every replica is back in sync
    redis-kill   kill -9 a Redis primary; its replica is promoted; start the old one again
                 (a single Redis: down for as long as a failover takes, then restarted)
    zombie       SIGSTOP a worker past the session timeout (its partitions move to the others),
                 then SIGCONT it: it wakes up with a batch it no longer owns
    scale-in     SIGTERM every worker but the first

Each fault fills in its `Phase`: what was done, when the faulted part served again. Between
faults `settle` waits until the group is stable and caught up, then holds `settle_s` of steady
traffic, so that each fault starts from a healthy system.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.chaos.redis_target import RedisTarget
from bench.chaos.stack import ClusterStack
from bench.chaos.verify import Phase
from bench.chaos.workers import WorkerPool

WORKERS = ("w1", "w2", "w3")
FULL_PLAN = (
    "scale-out",
    "worker-kill",
    "worker-kill",
    "worker-kill",
    "broker-kill",
    "redis-kill",
    "zombie",
    "scale-in",
)
SHORT_PLAN = ("scale-out", "worker-kill", "broker-kill", "redis-kill", "zombie", "scale-in")


@dataclass
class ChaosContext:
    """What the faults act on, and how long they wait."""

    stack: ClusterStack
    redis: RedisTarget
    pool: WorkerPool
    group: str
    input_topic: str
    topics: list[str]
    rate: float
    settle_s: float = 10.0
    session_timeout_s: float = 6.0
    broker_down_s: float = 15.0
    wait_timeout_s: float = 180.0
    _kills: int = field(default=0, repr=False)

    @property
    def bootstrap(self) -> str:
        return self.stack.bootstrap

    def members(self) -> dict[str, list[int]]:
        """Member id -> partitions of the input topic, while the group is stable; else {}."""
        from bench.kafka import stable_assignment

        try:
            return stable_assignment(self.stack.connection, self.group, self.input_topic)
        except Exception:  # noqa: BLE001 - coordinator moving (broker down): not stable
            return {}

    def lag(self) -> int | None:
        """Transactions not yet committed by the group (None when it cannot be asked)."""
        from confluent_kafka import ConsumerGroupTopicPartitions

        from stream.kafka_io import make_admin, make_consumer, watermarks

        admin = make_admin(self.stack.connection)
        probe = make_consumer(self.stack.connection, f"{self.group}-lag-probe")
        try:
            request = [ConsumerGroupTopicPartitions(self.group)]
            answer = admin.list_consumer_group_offsets(request, request_timeout=10)
            committed = {
                tp.partition: tp.offset
                for tp in answer[self.group].result().topic_partitions
                if tp.topic == self.input_topic
            }
            partitions = probe.list_topics(self.input_topic, timeout=10).topics[self.input_topic]
            total = 0
            for partition in partitions.partitions:
                end = watermarks(probe, self.input_topic, partition, 10)[1]
                total += end - max(committed.get(partition, 0), 0)
            return total
        except Exception:  # noqa: BLE001 - a broker or the coordinator is away: unknown
            return None
        finally:
            probe.close()

    def wait_group(self, workers: int, phase: Phase | None = None) -> float | None:
        """Wait until `workers` members share every partition; the seconds (None: timed out,
        noted on the phase)."""
        began = time.monotonic()
        while time.monotonic() - began < self.wait_timeout_s:
            members = self.members()
            if len(members) == workers and all(members.values()):
                return time.monotonic() - began
            time.sleep(0.5)
        if phase is not None:
            phase.notes.append(
                f"group not stable with {workers} members in {self.wait_timeout_s} s"
            )
        return None

    def settle(self, phase: Phase) -> None:
        """Stable group, lag down to two seconds of traffic, then `settle_s` of steady traffic."""
        self.wait_group(len(self.pool.names), phase)
        began = time.monotonic()
        while time.monotonic() - began < self.wait_timeout_s:
            lag = self.lag()
            if lag is not None and lag <= max(50, 2 * self.rate):
                break
            time.sleep(1)
        else:
            phase.notes.append(f"still behind after {self.wait_timeout_s} s")
        time.sleep(self.settle_s)

    def next_victim(self) -> str:
        running = [name for name in WORKERS if name in self.pool.names]
        victim = running[self._kills % len(running)]
        self._kills += 1
        return victim


def scale_out(ctx: ChaosContext, phase: Phase) -> None:
    new = [name for name in WORKERS if name not in ctx.pool.names]
    for name in new:
        ctx.pool.start(name, wait=False)
    for name in new:
        ctx.pool.worker(name).wait_healthy()
    phase.detail = f"started {', '.join(new)}"
    ctx.wait_group(len(ctx.pool.names), phase)
    phase.recovered_at = time.time()


def worker_kill(ctx: ChaosContext, phase: Phase) -> None:
    victim = ctx.next_victim()
    pid = ctx.pool.worker(victim).popen.pid
    ctx.pool.kill(victim)
    ctx.pool.start(victim)
    phase.detail = f"SIGKILL {victim} (pid {pid}), restarted"
    ctx.wait_group(len(ctx.pool.names), phase)
    phase.recovered_at = time.time()


def broker_kill(ctx: ChaosContext, phase: Phase) -> None:
    leaders = ctx.stack.partition_leaders(ctx.topics)
    node = leaders.most_common(1)[0][0]
    ctx.stack.kill_broker(node)
    time.sleep(ctx.broker_down_s)
    ctx.stack.start_broker(node)
    in_sync_s = ctx.stack.wait_in_sync(ctx.topics)
    phase.detail = (
        f"kill -9 kafka node {node} (led {leaders[node]} of {sum(leaders.values())} partitions), "
        f"restarted after {ctx.broker_down_s:.0f} s, replicas in sync {in_sync_s:.1f} s later"
    )
    phase.recovered_at = time.time()


def redis_kill(ctx: ChaosContext, phase: Phase) -> None:
    which = ctx.redis.kill_primary()
    serving_s = ctx.redis.wait_serving()
    ctx.redis.restore()
    phase.detail = f"kill -9 {which}; every key writable again after {serving_s:.1f} s; back"
    phase.recovered_at = time.time()


def zombie(ctx: ChaosContext, phase: Phase) -> None:
    running = ctx.pool.names
    victim = "w2" if "w2" in running else running[-1]
    frozen_for = ctx.session_timeout_s + max(6.0, ctx.session_timeout_s)
    ctx.pool.freeze(victim)
    time.sleep(frozen_for)
    moved = len(ctx.members()) == len(running) - 1
    ctx.pool.thaw(victim)
    ctx.pool.worker(victim).wait_healthy()
    phase.detail = (
        f"SIGSTOP {victim} for {frozen_for:.0f} s (session timeout {ctx.session_timeout_s:.0f} s"
        f"{', partitions moved' if moved else ''}), SIGCONT"
    )
    ctx.wait_group(len(running), phase)
    phase.recovered_at = time.time()


def scale_in(ctx: ChaosContext, phase: Phase) -> None:
    leaving = [name for name in ctx.pool.names if name != WORKERS[0]]
    for name in leaving:
        ctx.pool.stop(name)
    phase.detail = f"SIGTERM {', '.join(leaving)}"
    ctx.wait_group(len(ctx.pool.names), phase)
    phase.recovered_at = time.time()


FAULTS: dict[str, Callable[[ChaosContext, Phase], None]] = {
    "scale-out": scale_out,
    "worker-kill": worker_kill,
    "broker-kill": broker_kill,
    "redis-kill": redis_kill,
    "zombie": zombie,
    "scale-in": scale_in,
}
