"""The real services for integration tests.

With a Docker engine, testcontainers starts Apache Kafka (same version as ops/kafka/pom.xml)
and Redis in containers. Without one, the services of `make services` are used, and started
here (then stopped again) when they are not running. FRAUD_TEST_STACK=docker|local forces a path.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    from fraud.settings import KafkaConnection

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Stack:
    kind: str  # "docker" or "local"
    bootstrap: str
    redis_url: str

    @property
    def kafka(self) -> KafkaConnection:
        """The plaintext stack's brokers, as every Kafka client of the project takes them."""
        from fraud.settings import KafkaConnection

        return KafkaConnection(self.bootstrap)


def kafka_version() -> str:
    pom = (ROOT / "ops" / "kafka" / "pom.xml").read_text()
    match = re.search(r"<kafka.version>(.+?)</kafka.version>", pom)
    assert match, "ops/kafka/pom.xml must pin kafka.version"
    return match.group(1)


def docker_available() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - no engine, no socket, no permission: all mean "no"
        return False


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def docker_stack() -> Iterator[Stack]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.redis import RedisContainer

    port = _free_port()
    # The broker must advertise the host port the client reaches, so map it 1:1.
    kafka = (
        DockerContainer(f"apache/kafka:{kafka_version()}")
        .with_bind_ports(port, port)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", f"PLAINTEXT://:{port},CONTROLLER://:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://127.0.0.1:{port}")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env(
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
        )
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
    )
    with kafka, RedisContainer("redis:7.4") as redis_container:
        wait_for_logs(kafka, "Kafka Server started", timeout=120)
        host = redis_container.get_container_host_ip()
        redis_port = redis_container.get_exposed_port(6379)
        yield Stack("docker", f"127.0.0.1:{port}", f"redis://{host}:{redis_port}/0")


@contextmanager
def local_stack() -> Iterator[Stack]:
    from fraud.settings import Settings

    settings = Settings()
    bootstrap = settings.kafka_bootstrap_servers
    kafka_host, _, kafka_port = bootstrap.split(",")[0].rpartition(":")
    redis = urlparse(settings.redis_url)
    running = _port_open(kafka_host, int(kafka_port)) and _port_open(
        redis.hostname or "127.0.0.1", redis.port or 6379
    )
    script = ROOT / "ops" / "services.sh"
    if not running:
        subprocess.run([str(script), "up"], check=True, cwd=ROOT)
    try:
        yield Stack("local", bootstrap, settings.redis_url)
    finally:
        if not running and os.environ.get("FRAUD_TEST_KEEP_SERVICES") != "1":
            subprocess.run([str(script), "down"], check=False, cwd=ROOT)


@contextmanager
def test_stack() -> Iterator[Stack]:
    choice = os.environ.get("FRAUD_TEST_STACK", "auto")
    use_docker = choice == "docker" or (choice == "auto" and docker_available())
    with docker_stack() if use_docker else local_stack() as stack:
        yield stack
