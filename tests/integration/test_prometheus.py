"""A real Prometheus server (/usr/bin/prometheus on loopback) scraping the running exporters.

The server runs the repository's own scrape jobs and alert rules (ops/prometheus/prometheus.yml),
with the targets pointed at this test's processes and a one-second scrape interval.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from confluent_kafka import TopicPartition
from prometheus_client import start_http_server

from fraud.settings import KafkaConnection, Settings, TopicNames
from stream.kafka_io import make_consumer, make_producer
from stream.monitoring import (
    LabelJoin,
    LagMetrics,
    LagMonitor,
    LagRules,
    ModelMonitor,
    MonitorMetrics,
    MonitorService,
    parse_reference,
    run_exporter,
)
from tests.support.processes import free_port
from tests.support.stack import ROOT, Stack

pytestmark = pytest.mark.integration

PROMETHEUS_BIN = shutil.which("prometheus")
CONFIG = ROOT / "ops" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "dashboards" / "fraud-scorer.json"


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expression: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expression}, timeout=5)
        body = response.json()
        assert body["status"] == "success", (expression, body)
        return body["data"]["result"]

    def wait_for(self, expression: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """The query's result once it is non-empty (scrapes happen every second)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            result = self.query(expression)
            if result:
                return result
            time.sleep(0.5)
        targets = httpx.get(f"{self.url}/api/v1/targets", timeout=5).json()["data"]
        health = [
            (t["labels"]["job"], t["health"], t["lastError"]) for t in targets["activeTargets"]
        ]
        raise AssertionError(f"no result for {expression} within {timeout_s} s; targets: {health}")


@contextmanager
def prometheus_server(tmp_path: Path, ports: dict[str, int]) -> Iterator[Prometheus]:
    """Prometheus with the project's jobs and rules; `ports` maps job name -> local port."""
    if PROMETHEUS_BIN is None:
        pytest.skip("prometheus not installed (Debian: apt-get install prometheus; CI installs it)")
    config = yaml.safe_load(CONFIG.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(CONFIG.parent / pattern) for pattern in config["rule_files"]]
    config.pop("alerting")
    config["scrape_configs"] = [
        {**job, "static_configs": [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]}
        for job in config["scrape_configs"]
        if job["job_name"] in ports
    ]
    assert {job["job_name"] for job in config["scrape_configs"]} == set(ports)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            PROMETHEUS_BIN,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prometheus did not become ready in 30 s"
            time.sleep(0.2)
        yield Prometheus(url)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


def _iso(seconds: float) -> str:
    return (
        datetime.fromtimestamp(seconds, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _decision(tx: str, tier: str, score: float, now: float) -> dict[str, Any]:
    return {
        "transaction_id": tx,
        "card_id": "tok_0123456789",
        "event_time": _iso(now - 0.01),
        "decided_at": _iso(now),
        "score": score,
        "decision": tier,
        "thresholds": {"review": 0.5, "decline": 0.9},
        "model": {"name": "fraud-detector", "version": "7", "alias": "champion"},
        "features": {"amount": 25.0},
        "reason_codes": [],
        "latency_ms": 10.0,
        "degraded": False,
    }


def _feedback(tx: str, label: str) -> dict[str, Any]:
    return {
        "transaction_id": tx,
        "label": label,
        "analyst_id": "analyst-1",
        "labelled_at": _iso(time.time()).replace(".000Z", "Z")[:19] + "Z",
        "source": "analyst",
    }


REFERENCE = {
    "edges_from": "validation",
    "score": {"bin_edges": [0.0, 0.5, 1.0], "validation": [0.5, 0.5]},
    "features": {
        "amount": {
            "kind": "numeric",
            "bin_edges": [0.0, 100.0, 1000.0],
            "validation": [0.9, 0.1],
            "missing_share": {"validation": 0.0},
        }
    },
}


@contextmanager
def lag_exporter(bootstrap: str, group: str) -> Iterator[int]:
    """`fraud lag --serve` in-process: a monitor polling every half second and its endpoint."""
    port = free_port()
    metrics = LagMetrics()
    monitor = LagMonitor(
        KafkaConnection(bootstrap), group, LagRules(window=4, min_stop_s=60), lookback_s=60
    )
    server, _ = start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    stop = threading.Event()
    thread = threading.Thread(target=run_exporter, args=(monitor, metrics, 0.5, stop))
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(10)
        server.shutdown()
        monitor.close()


@contextmanager
def model_monitor(settings: Settings) -> Iterator[int]:
    """`fraud monitor --serve` in-process, reading the test's decisions and feedback topics."""
    port = free_port()
    service = MonitorService(
        settings,
        ModelMonitor(LabelJoin(window_s=3600), drift_window=100, min_drift_decisions=10),
        MonitorMetrics(),
        references=lambda name, version: parse_reference(REFERENCE),
        lookback_s=600,
    )
    server, _ = start_http_server(port, addr="127.0.0.1", registry=service.metrics.registry)
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop, 0.5))
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(10)
        server.shutdown()
        service.close()


def test_prometheus_scrapes_the_lag_exporter_and_the_model_monitor(
    stack: Stack, topic_factory: Callable[..., str], unique_name: Callable[[str], str], tmp_path
):
    # A group 7 messages behind on partition 0 of its topic.
    topic = topic_factory("prom-lag", partitions=2)
    group = unique_name("prom-lag")
    producer = make_producer(stack.kafka)
    for i in range(12):
        producer.produce(topic, f"m{i}".encode(), partition=0)
    assert producer.flush(10) == 0
    committer = make_consumer(stack.kafka, group)
    committer.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)
    committer.close()

    # 20 declines (19 confirmed fraud), 20 approvals, for model version 7.
    names = TopicNames(decisions=topic_factory("prom-decisions"), feedback=topic_factory("prom-fb"))
    settings = Settings(kafka_bootstrap_servers=stack.bootstrap, topics=names)
    now = time.time()
    for i in range(20):
        for tx, tier, score in ((f"d{i}", "decline", 0.95), (f"a{i}", "approve", 0.05)):
            producer.produce(names.decisions, orjson.dumps(_decision(tx, tier, score, now)), tx)
        verdict = "legit" if i == 0 else "fraud"
        producer.produce(names.feedback, orjson.dumps(_feedback(f"d{i}", verdict)), f"d{i}")
    assert producer.flush(10) == 0

    with (
        lag_exporter(stack.bootstrap, group) as lag_port,
        model_monitor(settings) as monitor_port,
        prometheus_server(tmp_path, {"fraud-lag": lag_port, "fraud-monitor": monitor_port}) as prom,
    ):
        (lag,) = prom.wait_for(
            f'fraud_consumer_lag_messages{{job="fraud-lag", group="{group}", partition="0"}}'
        )
        precision = prom.wait_for('fraud_live_precision_decline{model_version="7"}')
        psi = prom.wait_for('fraud_score_psi{model_version="7"}')
        up = prom.wait_for('up{job=~"fraud-lag|fraud-monitor"} == 1')
        rules = httpx.get(f"{prom.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        # Every dashboard query is valid PromQL to the real server.
        dashboard = DASHBOARD.read_text()
        expressions = [
            t["expr"] for p in orjson.loads(dashboard)["panels"] for t in p.get("targets", [])
        ]
        for expression in expressions:
            prom.query(
                expression.replace("$__rate_interval", "1m")
                .replace("$group", group)
                .replace("$model_version", ".*")
            )

    assert lag["metric"]["topic"] == topic
    assert float(lag["value"][1]) == 7
    assert [float(r["value"][1]) for r in precision] == [pytest.approx(19 / 20)]
    assert [float(r["value"][1]) for r in psi] == [pytest.approx(0.0)]  # half and half, as trained
    assert {r["metric"]["job"] for r in up} == {"fraud-lag", "fraud-monitor"}
    assert {g["name"] for g in rules} == {"fraud-worker", "fraud-lag", "fraud-model"}
    assert all(rule["health"] in ("ok", "unknown") for g in rules for rule in g["rules"])


@pytest.mark.slow
def test_prometheus_reads_a_running_workers_decision_counter(worker_env, consume_all, tmp_path):
    """The worker (with a champion trained into a private MLflow store) scraped at its port."""
    from simulator.bank import Bank
    from simulator.live import LiveTraffic
    from simulator.produce import produce_live

    with worker_env.worker() as worker:
        report = produce_live(
            worker_env.stack.kafka,
            LiveTraffic(Bank.build(400, 5), 5),
            rate=200,
            duration_s=2,
            topic=worker_env.topics["transactions"],
            truth_topic=worker_env.topics["truth"],
        )
        decisions = consume_all(worker_env.topics["decisions"], count=report.valid, timeout_s=90)
        assert len(decisions) == report.valid > 0
        with prometheus_server(tmp_path, {"fraud-worker": worker.port}) as prom:
            (decided,) = prom.wait_for(
                f'sum(fraud_decisions_total{{job="fraud-worker"}}) == {len(decisions)}'
            )
            by_tier = prom.query('sum by (decision) (fraud_decisions_total{job="fraud-worker"})')
            (p99,) = prom.wait_for(
                "histogram_quantile(0.99, sum by (le) "
                '(fraud_event_to_decision_seconds_bucket{job="fraud-worker"}))'
            )
            (model,) = prom.wait_for('fraud_model_info{job="fraud-worker"}')
            stages = prom.wait_for(
                'sum by (stage) (fraud_batch_stage_seconds_count{job="fraud-worker"}) > 0'
            )
            batches = prom.query('sum(fraud_batch_size_count{job="fraud-worker"})')

    assert float(decided["value"][1]) == len(decisions)
    tiers = {r["metric"]["decision"]: float(r["value"][1]) for r in by_tier}
    assert tiers == {
        tier: float(sum(d["decision"] == tier for d in decisions))
        for tier in ("approve", "review", "decline")
    }
    assert 0 < float(p99["value"][1]) < 10
    assert model["metric"]["version"] == worker_env.champion.version
    # Every batch heard in each stage: fetched, decided, delivered.
    per_stage = {r["metric"]["stage"]: float(r["value"][1]) for r in stages}
    (batch_count,) = batches
    assert per_stage == dict.fromkeys(
        ("fetch_wait", "deciding", "delivery"), float(batch_count["value"][1])
    )
