"""Where the workers keep their feature state during a chaos run, and how its primary dies.

`ClusterRedis` is the Redis Cluster of the clustered stack: the fault kills the primary holding
the most keys, waits until its replica is promoted, then starts the old primary again (it
rejoins as a replica). `SingleRedis` is one private redis-server (append-only file on) for a
store that cannot run on Redis Cluster: the fault kills it and starts it again on the same port
after as long as a cluster failover takes. Both say what they did, for the report.
"""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bench.chaos.stack import ClusterStack
from fraud.errors import ServiceUnavailableError


class RedisTarget(Protocol):
    cluster: bool

    @property
    def url(self) -> str: ...

    def kill_primary(self) -> str:
        """Kill -9 a primary; returns which one."""
        ...

    def wait_serving(self) -> float:
        """Until every key can be written again (promotion, or restart); the seconds."""
        ...

    def restore(self) -> None:
        """Bring the killed node back."""
        ...


@dataclass
class ClusterRedis:
    stack: ClusterStack
    cluster: bool = True
    _killed: int | None = None

    @property
    def url(self) -> str:
        return self.stack.redis_url

    def kill_primary(self) -> str:
        self._killed = self.stack.redis_primary_with_most_keys()
        self.stack.kill_redis(self._killed)
        return f"redis primary 127.0.0.1:{self._killed}"

    def wait_serving(self) -> float:
        return self.stack.wait_redis_serving()

    def restore(self) -> None:
        if self._killed is not None:
            self.stack.start_redis(self._killed)
            self._killed = None


@dataclass
class SingleRedis:
    """A private redis-server on `port`, its data in `folder`; `outage_s` is how long it stays
    down when killed (about what a Redis Cluster failover takes)."""

    folder: Path
    port: int
    outage_s: float = 4.0
    cluster: bool = False
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.folder.mkdir(parents=True, exist_ok=True)
        args = ["--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder)]
        with (self.folder / "redis.log").open("ab") as log:
            self.popen = subprocess.Popen(
                ["redis-server", *args, "--appendonly", "yes", "--save", ""],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with redis.Redis(port=self.port, socket_connect_timeout=0.2) as client:
                    if client.ping():
                        return
            except redis.RedisError:
                time.sleep(0.05)
        raise ServiceUnavailableError(
            f"redis-server on port {self.port} did not answer; see {self.folder / 'redis.log'}"
        )

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            self.popen.wait(20)
        self.popen = None

    def kill_primary(self) -> str:
        if self.popen is not None:
            self.popen.kill()
            self.popen.wait(10)
        return f"redis 127.0.0.1:{self.port} (single node)"

    def wait_serving(self) -> float:
        time.sleep(self.outage_s)
        began = time.monotonic()
        self.start()
        return self.outage_s + time.monotonic() - began

    def restore(self) -> None:
        """Nothing left to do: wait_serving started it again."""
