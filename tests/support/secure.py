"""The secured stack for tests: `SECURE=1 ops/services.sh up` in a private folder on free ports
(Kafka SASL_SSL + ACLs, Redis TLS + ACL users, MLflow basic auth), stopped at the end."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fraud.settings import Settings
from tests.support.processes import free_port
from tests.support.stack import ROOT

# Settings fields that come from standard variable names rather than FRAUD_*.
_STANDARD = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka_bootstrap_servers",
    "REDIS_URL": "redis_url",
    "MLFLOW_TRACKING_URI": "mlflow_tracking_uri",
}


@dataclass(frozen=True)
class SecureStack:
    folder: Path
    kafka_port: int
    redis_port: int
    mlflow_port: int

    @property
    def ca_file(self) -> Path:
        return self.folder / "certs" / "ca.pem"

    @property
    def mlflow_uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    def env(self, role: str) -> dict[str, str]:
        """The variables of `ops/services.sh as ROLE`: what that role's processes get."""
        values = {}
        for line in (self.folder / "env" / f"{role}.env").read_text().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.partition("=")
                values[name] = value
        return values

    def secret(self, name: str) -> str:
        for line in (self.folder / "secrets" / "passwords.env").read_text().splitlines():
            if line.startswith(f"{name}="):
                return line.partition("=")[2]
        raise KeyError(name)

    def settings(self, role: str, **overrides: object) -> Settings:
        """Settings of a process running as `role` (its env file), `overrides` on top."""
        values: dict[str, object] = {}
        for name, value in self.env(role).items():
            if name in _STANDARD:
                values[_STANDARD[name]] = value
            elif name.startswith("FRAUD_"):
                values[name.removeprefix("FRAUD_").lower()] = value
        values.update(overrides)
        return Settings(**values)


def _own_names(name: str) -> bool:
    """Variables that would rename the stack's topics, group or Redis prefix: its ACLs are
    granted on the defaults."""
    return name.startswith("FRAUD_TOPIC_") or name in ("FRAUD_CONSUMER_GROUP", "FRAUD_REDIS_PREFIX")


def _services(command: str, env: dict[str, str], *parts: str) -> None:
    inherited = {k: v for k, v in os.environ.items() if not _own_names(k)}
    result = subprocess.run(
        [str(ROOT / "ops" / "services.sh"), command, *parts],
        cwd=ROOT,
        env={**inherited, **env, "SECURE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{command}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@contextmanager
def secure_stack(folder: Path) -> Iterator[SecureStack]:
    stack = SecureStack(folder, free_port(), free_port(), free_port())
    env = {
        "FRAUD_SECURE_STATE_DIR": str(folder),
        "FRAUD_SECURE_KAFKA_PORT": str(stack.kafka_port),
        "FRAUD_SECURE_KAFKA_CONTROLLER_PORT": str(free_port()),
        "FRAUD_SECURE_REDIS_PORT": str(stack.redis_port),
        "FRAUD_SECURE_MLFLOW_PORT": str(stack.mlflow_port),
    }
    try:
        _services("up", env)
        yield stack
    finally:
        _services("down", env)
