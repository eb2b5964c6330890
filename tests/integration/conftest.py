"""Integration fixtures: a trained champion in a private MLflow store, and running workers."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench.chaos import ClusterStack
from fraud.settings import KafkaConnection, Settings
from tests.support.processes import Proc, fraud_command, free_port, running, wait_healthy
from tests.support.stack import ROOT, Stack
from tests.support.worker import RedisServer


@dataclass(frozen=True)
class Champion:
    """A private state folder whose MLflow store has a `fraud-detector@champion`."""

    state_dir: Path
    history: Path
    version: str

    @property
    def tracking_uri(self) -> str:
        return store_uri(self.state_dir)

    def settings(self) -> Settings:
        return Settings(state_dir=self.state_dir, MLFLOW_TRACKING_URI=self.tracking_uri)

    def env(self) -> dict[str, str]:
        return {"FRAUD_STATE_DIR": str(self.state_dir), "MLFLOW_TRACKING_URI": self.tracking_uri}


def store_uri(state_dir: Path) -> str:
    """The MLflow store of a state folder, named explicitly: opening a store (mlflow's
    set_tracking_uri) exports MLFLOW_TRACKING_URI into this process's environment, which
    Settings and every child process would otherwise follow instead of FRAUD_STATE_DIR."""
    return Settings(state_dir=state_dir, MLFLOW_TRACKING_URI=None).tracking_uri


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    result = subprocess.run(
        args, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, (
        f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def train_champion(base: Path, seed: int = 5, extra: tuple[str, ...] = ()) -> Champion:
    """Simulate a small bank, train on it and make sure a champion exists (forced if gates fail)."""
    from stream.scoring import open_store, version_at_alias

    state = base / "state"
    env = {"FRAUD_STATE_DIR": str(state), "MLFLOW_TRACKING_URI": store_uri(state)}
    history = base / "history"
    _run(
        fraud_command(
            "simulate",
            "--customers",
            "400",
            "--days",
            "35",
            "--seed",
            str(seed),
            "--out",
            str(history),
        ),
        env,
    )
    _run(
        fraud_command(
            "train",
            "--data",
            str(history / "transactions.parquet"),
            "--no-baseline",
            "--test-days",
            "7",
            "--validation-days",
            "7",
            "--warmup-days",
            "3",
            "--search-trials",
            "1",
            "--no-previous-design",
            "--results-dir",
            str(base / "results"),
            "--model-card",
            str(base / "card.md"),
            *extra,
        ),
        env,
    )
    settings = Settings(state_dir=state, MLFLOW_TRACKING_URI=store_uri(state))
    client = open_store(settings)
    champion = version_at_alias(client, settings.model_name, "champion")
    if (
        champion is None
    ):  # a tiny test bank may fail the fairness gate; the worker just needs a model
        latest = max(
            client.search_model_versions(f"name='{settings.model_name}'"),
            key=lambda v: int(v.version),
        )
        _run(
            fraud_command(
                "promote",
                "--version",
                str(latest.version),
                "--force",
                "--reason",
                "integration-test fixture",
            ),
            env,
        )
        champion = version_at_alias(client, settings.model_name, "champion")
    assert champion is not None
    return Champion(state, history, str(champion.version))


@pytest.fixture(scope="session")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Champion:
    """Trained once per session. FRAUD_TEST_CHAMPION_DIR=<folder> keeps it there across runs
    (delete the folder after changing feature code: the worker refuses a stale model)."""
    import os

    kept = os.environ.get("FRAUD_TEST_CHAMPION_DIR")
    if kept:
        return _kept_champion(Path(kept))
    return train_champion(tmp_path_factory.mktemp("champion"))


def _kept_champion(base: Path) -> Champion:
    import shutil

    from stream.scoring import open_store, version_at_alias

    state = base / "state"
    if (state / "mlflow" / "mlflow.db").exists():
        settings = Settings(state_dir=state, MLFLOW_TRACKING_URI=store_uri(state))
        found = version_at_alias(open_store(settings), settings.model_name, "champion")
        if found is not None and found.tags.get("integrity.signature"):
            return Champion(state, base / "history", str(found.version))
        shutil.rmtree(state)  # trained before versions were signed: the worker refuses it
    return train_champion(base)


@pytest.fixture
def private_champion(
    champion: Champion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Champion:
    """A copy of the session champion's state folder: a test may register and promote versions
    in it without moving the champion other tests score with."""
    import shutil

    state = tmp_path / "registry-state"
    shutil.copytree(champion.state_dir, state, ignore=shutil.ignore_patterns("faust"))
    copy = Champion(state, champion.history, champion.version)
    # Opening the copy exports its URI into this process; put the variable back afterwards.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", copy.tracking_uri)
    return copy


@dataclass
class WorkerEnv:
    """Topic, group and Redis names unique to one test, shared by every worker it starts."""

    stack: Stack
    champion: Champion
    topics: dict[str, str]
    group: str
    redis_prefix: str
    logs: Path
    extra: dict[str, str] = field(default_factory=dict)

    def env(self, port: int) -> dict[str, str]:
        names = {
            "FRAUD_TOPIC_TRANSACTIONS": self.topics["transactions"],
            "FRAUD_TOPIC_DECISIONS": self.topics["decisions"],
            "FRAUD_TOPIC_ALERTS": self.topics["alerts"],
            "FRAUD_TOPIC_FEEDBACK": self.topics["feedback"],
            "FRAUD_TOPIC_DEAD_LETTER": self.topics["dead_letter"],
            "FRAUD_TOPIC_TRUTH": self.topics["truth"],
        }
        return {
            **self.champion.env(),
            **names,
            "KAFKA_BOOTSTRAP_SERVERS": self.stack.bootstrap,
            "REDIS_URL": self.stack.redis_url,
            "FRAUD_CONSUMER_GROUP": self.group,
            "FRAUD_REDIS_PREFIX": self.redis_prefix,
            "FRAUD_WEB_PORT": str(port),
            "FRAUD_MODEL_POLL_INTERVAL_S": "1",
            **self.extra,
        }

    @contextmanager
    def worker(self, name: str = "worker", wait: bool = True) -> Iterator[Proc]:
        """A running `fraud worker`; healthy on entry unless `wait` is False (start several
        at once, then `wait_healthy` each)."""
        port = free_port()
        with running(
            fraud_command("worker"), self.env(port), self.logs / f"{name}.log", port
        ) as proc:
            if wait:
                wait_healthy(proc)
            yield proc


@pytest.fixture
def worker_env(
    stack, champion, topic_factory, unique_name, tmp_path, redis_client
) -> Iterator[WorkerEnv]:
    topics = {
        kind: topic_factory(kind.replace("_", "-"))
        for kind in ("transactions", "decisions", "alerts", "feedback", "dead_letter", "truth")
    }
    prefix = unique_name("fraud")
    yield WorkerEnv(stack, champion, topics, unique_name("scorer"), prefix, tmp_path / "logs")
    for key in redis_client.scan_iter(f"{prefix}:*", count=1000):
        redis_client.delete(key)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    """Start private redis-server processes (free port, temp folder); all stopped at teardown."""
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(servers)}")
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@dataclass(frozen=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@pytest.fixture
def consume_raw(stack: Stack, unique_name) -> Callable[..., list[RawRecord]]:
    """Every record of a topic from the beginning, bytes as stored: waits until the topic holds
    at least `count` records (or `timeout_s` passed), then reads up to its end offsets."""
    import time

    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    from stream.kafka_io import make_consumer

    def consume(
        topic: str, count: int = 0, timeout_s: float = 60, bootstrap: str | None = None
    ) -> list[RawRecord]:
        consumer = make_consumer(
            KafkaConnection(bootstrap or stack.bootstrap), unique_name("raw-reader")
        )
        try:
            partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)

            def end_offsets() -> dict[int, int]:
                return {
                    p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in partitions
                }

            deadline = time.monotonic() + timeout_s
            ends = end_offsets()
            while sum(ends.values()) < count and time.monotonic() < deadline:
                time.sleep(0.25)
                ends = end_offsets()
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
            records: list[RawRecord] = []
            unread = {p for p, end in ends.items() if end > 0}
            while unread and time.monotonic() < deadline + 30:
                for message in consumer.consume(1000, timeout=0.5):
                    assert message.error() is None, message.error()
                    partition, offset = message.partition(), message.offset()
                    if offset >= ends[partition]:
                        continue
                    records.append(
                        RawRecord(topic, partition, offset, message.key(), message.value())
                    )
                    if offset == ends[partition] - 1:
                        unread.discard(partition)
            assert not unread, f"could not read {topic} to its end (partitions {unread})"
        finally:
            consumer.close()
        return records

    return consume


ConsumeAll = Callable[..., list[dict]]


@pytest.fixture
def consume_all(stack: Stack, unique_name) -> ConsumeAll:
    """Read a topic from the beginning until `count` records arrived (or the timeout)."""
    import time

    import orjson

    from stream.kafka_io import make_consumer

    def consume(
        topic: str, count: int | None = None, timeout_s: float = 60, idle_s: float = 3
    ) -> list[dict]:
        consumer = make_consumer(stack.kafka, unique_name("reader"))
        consumer.subscribe([topic])
        records: list[dict] = []
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        try:
            while time.monotonic() < deadline:
                batch = consumer.consume(1000, timeout=0.5)
                for message in batch:
                    assert message.error() is None, message.error()
                    records.append(orjson.loads(message.value()))
                if batch:
                    last_new = time.monotonic()
                if count is not None and len(records) >= count:
                    break
                if count is None and time.monotonic() - last_new > idle_s and records:
                    break
        finally:
            consumer.close()
        return records

    return consume


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterStack]:
    """The clustered stack (three Kafka nodes, a six-node Redis Cluster) on free ports, for the
    tests that need it; stopped and wiped at the end of the session."""
    from tests.support.cluster import cluster_stack

    with cluster_stack(tmp_path_factory.mktemp("cluster")) as running:
        yield running
