"""Support for the worker resilience tests: traffic in the background, metrics, card-number
scans, consumer-group assignments and private Redis / Kafka servers started by a test."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import threading
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import KafkaError, KafkaException
from prometheus_client.parser import text_string_to_metric_families

from fraud.settings import KafkaConnection
from simulator.bank import Bank
from simulator.live import LiveTraffic
from simulator.produce import ProduceReport, produce_live
from stream.edge import luhn_valid
from tests.support.processes import Proc, free_port
from tests.support.stack import ROOT

# A card number: 13-19 digits in a row (not part of a longer run) that pass the Luhn check.
_DIGIT_RUN = re.compile(rb"(?<![0-9])[0-9]{13,19}(?![0-9])")


def luhn_runs(data: bytes | str) -> list[str]:
    """Every Luhn-valid 13-19 digit run in `data`: what a card-number scanner would flag."""
    raw = data.encode() if isinstance(data, str) else data
    return [m.group().decode() for m in _DIGIT_RUN.finditer(raw) if luhn_valid(m.group().decode())]


def scrape(proc: Proc) -> dict[str, float]:
    """The worker's /metrics as {'name{label="v"}': value} (labels sorted, none: bare name)."""
    text = httpx.get(proc.url("/metrics"), timeout=5).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def produce(
    worker_env: Any, rate: float, seconds: float, seed: int = 5, bootstrap: str | None = None
) -> ProduceReport:
    """Simulated live traffic into the test's transactions topic (ground truth beside it)."""
    return produce_live(
        KafkaConnection(bootstrap or worker_env.stack.bootstrap),
        LiveTraffic(Bank.build(400, seed), seed),
        rate=rate,
        duration_s=seconds,
        topic=worker_env.topics["transactions"],
        truth_topic=worker_env.topics["truth"],
    )


class BackgroundTraffic:
    """Live traffic on a thread, in chunks of `chunk_s` seconds, until `stop()`: a test acts on
    the worker while events flow, however long a busy machine makes each step take."""

    def __init__(
        self,
        worker_env: Any,
        rate: float,
        seed: int = 5,
        chunk_s: float = 1.0,
        bootstrap: str | None = None,
    ) -> None:
        self._produce = partial(
            produce_live,
            KafkaConnection(bootstrap or worker_env.stack.bootstrap),
            LiveTraffic(Bank.build(400, seed), seed),
            rate=rate,
            duration_s=chunk_s,
            topic=worker_env.topics["transactions"],
            truth_topic=worker_env.topics["truth"],
        )
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="traffic")
        self._future: Future[list[ProduceReport]] | None = None

    def _run(self) -> list[ProduceReport]:
        reports = []
        while not self._stopping.is_set():
            reports.append(self._produce())
        return reports

    def __enter__(self) -> BackgroundTraffic:
        self._future = self._pool.submit(self._run)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._pool.shutdown(wait=True)

    @property
    def running(self) -> bool:
        return self._future is not None and not self._future.done()

    def stop(self) -> ProduceReport:
        """Stop after the current chunk; the chunks' totals (every event acknowledged)."""
        assert self._future is not None
        self._stopping.set()
        reports = self._future.result(timeout=120)
        total = ProduceReport(asked_rate=reports[0].asked_rate, duration_s=0.0)
        for report in reports:
            assert report.delivery_errors == 0, report.as_dict()
            total.duration_s += report.duration_s
            total.sent += report.sent
            total.valid += report.valid
            total.delivered += report.delivered
        return total


def wait_until(condition: Any, timeout_s: float, what: str, pause_s: float = 0.2) -> Any:
    """Poll `condition()` until it returns something truthy; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(pause_s)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def decisions_by_transaction(
    decisions: list[dict[str, Any]], expected: set[str]
) -> dict[str, list[dict[str, Any]]]:
    """Transaction id -> its decisions in the order `decisions` holds them, after asserting
    that every expected transaction, and no other, was decided, and that a repeated decision
    (at-least-once) carries the features of the first."""
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for decision in decisions:
        by_id[decision["transaction_id"]].append(decision)
    assert set(by_id) == expected
    for tx, copies in by_id.items():
        assert all(copy["features"] == copies[0]["features"] for copy in copies), tx
    return by_id


_COORDINATOR_STARTING = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
}


def group_assignment(bootstrap: str, group: str, topic: str) -> dict[str, list[int]]:
    """Member id -> partitions of `topic` it holds, when the group is stable; else {}."""
    from bench.kafka import stable_assignment

    try:
        return stable_assignment(KafkaConnection(bootstrap), group, topic)
    except KafkaException as exc:
        # A broker that has just started has no group coordinator yet (NOT_COORDINATOR was
        # seen on a fresh broker): not stable, ask again.
        error = exc.args[0]
        if error.retriable() or error.code() in _COORDINATOR_STARTING:
            return {}
        raise


@dataclass
class RedisServer:
    """A private redis-server (Debian binary) on a free port, with its data in `folder`."""

    folder: Path
    port: int = field(default_factory=free_port)
    popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        log = (self.folder / "redis.log").open("ab")
        # The append-only file keeps the aggregates across a stop/start, like ops/services.sh.
        args = ["--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder)]
        self.popen = subprocess.Popen(
            ["redis-server", *args, "--appendonly", "yes", "--save", ""],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(self.answers, 10, f"private redis on port {self.port}", pause_s=0.05)

    def answers(self) -> bool:
        import redis

        try:
            with redis.Redis(port=self.port, socket_connect_timeout=0.2) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            self.popen.wait(10)
        self.popen = None


@dataclass
class KafkaBroker:
    """A private single-node KRaft broker from the jars ops/services.sh fetched."""

    folder: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    popen: subprocess.Popen[bytes] | None = None

    @staticmethod
    def libs() -> Path | None:
        from tests.support.stack import kafka_version

        folder = ROOT / ".state" / "kafka" / f"libs-{kafka_version()}"
        return folder if (folder / ".complete").exists() and shutil.which("java") else None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def kafka(self) -> KafkaConnection:
        return KafkaConnection(self.bootstrap)

    def _java(self, main: str, *args: str) -> list[str]:
        libs = self.libs()
        assert libs is not None, "no Kafka jars: run `make services` once"
        return [
            "java",
            "-Xms128m",
            "-Xmx384m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={ROOT / 'ops' / 'kafka' / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.folder / 'logs'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def format(self) -> None:
        template = (ROOT / "ops" / "kafka" / "server.properties.in").read_text()
        config = (
            template.replace("@PORT@", str(self.port))
            .replace("@CONTROLLER_PORT@", str(self.controller_port))
            .replace("@DATA_DIR@", str(self.folder / "data"))
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "server.properties").write_text(config)
        subprocess.run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "-t",
                "q1Sh-9_ISia_zwGINzRvyQ",  # any fixed cluster id: the broker is private
                "-c",
                str(self.folder / "server.properties"),
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self, timeout_s: float = 90) -> None:
        from stream.kafka_io import wait_for_broker

        log = (self.folder / "kafka.out").open("ab")
        self.popen = subprocess.Popen(
            self._java("kafka.Kafka", str(self.folder / "server.properties")),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for_broker(self.kafka, timeout_s)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self.popen = None
