"""What a benchmark run is set up with: options, the machine and versions, private names."""

from __future__ import annotations

import os
import platform
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.kafka import BenchTopics, TopicLedger
from fraud.errors import ConfigError, ServiceUnavailableError
from fraud.secrets import mask_url
from fraud.settings import PROJECT_ROOT, Settings

FEATURE_MODES = ("memory", "none")
VERSIONED_PACKAGES = (
    "fraud-scorer",
    "faust-streaming",
    "aiokafka",
    "confluent-kafka",
    "redis",
    "hiredis",
    "scikit-learn",
    "numpy",
    "pandas",
    "numba",
    "mlflow",
    "flask",
    "gunicorn",
)


@dataclass(frozen=True)
class BenchOptions:
    events: int = 100_000
    rates: tuple[float, ...] = (1_000.0, 2_000.0, 5_000.0)
    duration_s: float = 15.0
    warmup_s: float = 3.0
    saturation_timeout_s: float = 45.0  # stop counting after this long: a slow worker
    drain_timeout_s: float = 10.0  # after a fixed-rate run, wait at most this for the backlog
    customers: int = 5_000
    seed: int = 1
    warm_days: float = 0.0  # days of history loaded into each worker's store first (0: empty)
    partitions: int = 4
    batch_size: int | None = None  # None: the worker's own setting (FRAUD_BATCH_SIZE or 500)
    env: dict[str, str] = field(default_factory=dict)  # added to the worker's and server's env
    state_dir: Path | None = None
    out_dir: Path = PROJECT_ROOT / "bench-results"
    baselines: bool = True
    http_requests: int = 20_000
    http_seconds: float = 15.0
    http_clients: int = 2
    http_features: str = "memory"
    two_workers: bool = True
    profile: bool = True  # a worker sampled by py-spy
    cprofile: bool = False  # a worker under cProfile (every thread)
    profile_top: int = 25

    def validate(self) -> None:
        problems = []
        if self.events < 1_000:
            problems.append(f"--events must be at least 1000, got {self.events}")
        if not self.rates or any(r <= 0 for r in self.rates):
            problems.append(f"--rates must be positive numbers, got {self.rates}")
        if self.duration_s <= 0 or self.warmup_s < 0:
            problems.append("--duration must be positive and --warmup not negative")
        if self.saturation_timeout_s <= 0 or self.drain_timeout_s <= 0:
            problems.append("--saturation-timeout and --drain-timeout must be positive")
        if self.customers < 1 or self.partitions < 1:
            problems.append("--customers and --partitions must be positive")
        if not 0 <= self.warm_days <= 60:
            problems.append(f"--warm-days must be between 0 and 60, got {self.warm_days}")
        if self.batch_size is not None and self.batch_size < 1:
            problems.append(f"--batch-size must be positive, got {self.batch_size}")
        if self.http_requests < 1 or self.http_seconds <= 0 or self.http_clients < 1:
            problems.append("--http-requests, --http-seconds and --http-clients must be positive")
        if self.http_features not in FEATURE_MODES:
            problems.append(f"--http-features must be one of {', '.join(FEATURE_MODES)}")
        if problems:
            raise ConfigError("; ".join(problems))

    def record(self, settings: Settings) -> dict[str, Any]:
        """The settings used, for the results document."""
        record = asdict(self)
        record["state_dir"] = None if self.state_dir is None else str(self.state_dir)
        record["out_dir"] = str(self.out_dir)
        record["worker_batch_size"] = self.batch_size or settings.batch_size
        record["worker_batch_within_s"] = settings.batch_within_s
        record["kafka"] = settings.kafka.describe()
        record["redis_url"] = mask_url(settings.redis_url)
        return record


def parse_rates(text: str) -> tuple[float, ...]:
    """'1000,2000,5k' -> (1000.0, 2000.0, 5000.0); ConfigError naming the bad item."""
    rates = []
    for item in text.split(","):
        item = item.strip().lower()
        if not item:
            continue
        scale = 1_000.0 if item.endswith("k") else 1.0
        try:
            value = float(item.removesuffix("k")) * scale
        except ValueError:
            raise ConfigError(f"--rates: {item!r} is not a number (e.g. 1000,2000,5000)") from None
        if value <= 0:
            raise ConfigError(f"--rates: {item!r} must be positive")
        rates.append(value)
    if not rates:
        raise ConfigError("--rates needs at least one rate (e.g. 1000,2000,5000)")
    return tuple(rates)


def parse_env(items: list[str]) -> dict[str, str]:
    """['OMP_NUM_THREADS=1'] -> {'OMP_NUM_THREADS': '1'}; ConfigError naming the bad item."""
    env = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f"--env: {item!r} is not NAME=VALUE")
        env[name] = value
    return env


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model or platform.processor(),
        "platform": platform.platform(),
        "load_average_at_start": load_average(),
    }


def versions(redis_client: Any) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    import confluent_kafka

    found: dict[str, Any] = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    found["librdkafka"] = confluent_kafka.libversion()[0]
    found["redis_server"] = redis_client.info("server").get("redis_version")
    pom = PROJECT_ROOT / "ops" / "kafka" / "pom.xml"
    text = pom.read_text() if pom.is_file() else ""
    match = re.search(r"<kafka.version>(.+?)</kafka.version>", text)
    found["kafka_broker"] = match.group(1) if match else None
    found.update(source_state())
    return found


def source_state() -> dict[str, Any]:
    """The commit measured, and which tracked files differed from it (work in progress)."""
    import subprocess

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10
        )
        return result.stdout.rstrip("\n") if result.returncode == 0 else ""

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = [
            line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
        ]
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_modified_files": []}
    return {"git_commit": commit or None, "git_modified_files": changed}


class BenchContext:
    """Services, private names and clean-up shared by the steps of one run."""

    def __init__(self, settings: Settings, options: BenchOptions) -> None:
        from stream.redis_io import connect_redis

        self.settings = settings
        self.options = options
        self.run_id = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        self.connection = settings.kafka
        self.topics = TopicLedger(self.connection, options.partitions)
        self.redis = connect_redis(settings, socket_timeout=5)
        self.redis_prefixes: list[str] = []
        self.run_dir = options.out_dir / f"run-{self.run_id}"

    def check_services(self) -> None:
        import redis

        from stream.kafka_io import wait_for_broker

        wait_for_broker(self.connection, 10)
        try:
            self.redis.ping()
        except redis.RedisError as exc:
            raise ServiceUnavailableError(
                f"Redis at {mask_url(self.settings.redis_url)} did not answer ({exc}); run `make services`"
            ) from exc

    def new_topics(self, trial: str) -> BenchTopics:
        topics = BenchTopics.unique(self.run_id, trial)
        self.topics.create(topics.names())
        return topics

    def group_name(self, trial: str) -> str:
        """The consumer group (and Redis prefix) of a trial's workers."""
        return f"bench-{self.run_id}-{trial}"

    def worker_env(
        self, state_dir: Path, topics: BenchTopics, trial: str, port: int
    ) -> dict[str, str]:
        """A worker of its own: consumer group, Redis prefix, port, topics, MLflow store."""
        prefix = self.group_name(trial)
        if prefix not in self.redis_prefixes:
            self.redis_prefixes.append(prefix)
        env = {
            **self.options.env,
            **topics.env(),
            "FRAUD_STATE_DIR": str(state_dir),
            "KAFKA_BOOTSTRAP_SERVERS": self.connection.bootstrap,
            "REDIS_URL": self.settings.redis_url,
            "FRAUD_CONSUMER_GROUP": self.group_name(trial),
            "FRAUD_REDIS_PREFIX": prefix,
            "FRAUD_WEB_PORT": str(port),
        }
        if self.options.batch_size is not None:
            env["FRAUD_BATCH_SIZE"] = str(self.options.batch_size)
        return env

    def clean_up(self) -> None:
        self.topics.delete_all()
        for prefix in self.redis_prefixes:
            keys: list[bytes] = []
            for key in self.redis.scan_iter(f"{prefix}:*", count=1000):
                keys.append(key)
                if len(keys) == 1000:  # a warmed store holds a million keys: not one at a time
                    self.redis.unlink(*keys)
                    keys.clear()
            if keys:
                self.redis.unlink(*keys)
