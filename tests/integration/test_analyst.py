"""`fraud analyst` against the real broker: hand-made alerts, decisions and truth in, feedback out."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from fraud.settings import KafkaConnection, Settings, TopicNames
from schemas import validator
from simulator.analyst import AnalystConfig, run_analyst
from stream.feedback import scan_topic
from stream.kafka_io import make_producer
from tests.support.stack import ROOT, Stack

pytestmark = pytest.mark.integration


def iso(seconds: float) -> str:
    return (
        datetime.fromtimestamp(seconds, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def an_alert(tid: str, event_time: float) -> dict[str, Any]:
    """Reviews fall due on the transaction's clock: `review_delay` after its event_time."""
    return validator("alert")(
        {
            "transaction_id": tid,
            "card_id": "card-00007",
            "customer_id": "cust-00007",
            "terminal_id": "term-00001",
            "merchant_category": "grocery",
            "event_time": iso(event_time),
            "decided_at": iso(event_time + 0.01),
            "amount": 42.0,
            "score": 0.7,
            "decision": "review",
            "model_version": "1",
            "reason_codes": [{"feature": "amount", "contribution": 0.2}],
        }
    )


def a_decision(tid: str, verdict: str, event_time: float) -> dict[str, Any]:
    return validator("decision")(
        {
            "transaction_id": tid,
            "card_id": "card-00007",
            "event_time": iso(event_time),
            "decided_at": iso(event_time + 0.01),
            "score": 0.1 if verdict == "approve" else 0.95,
            "decision": verdict,
            "thresholds": {"review": 0.5, "decline": 0.9},
            "model": {"name": "fraud-detector", "version": "1", "alias": "champion"},
            "features": {"amount": 42.0},
            "reason_codes": [],
            "latency_ms": 1.0,
            "degraded": False,
        }
    )


def truth(tid: str, is_fraud: bool) -> dict[str, Any]:
    """As the simulator writes it (is_fraud 0/1)."""
    return {
        "transaction_id": tid,
        "is_fraud": int(is_fraud),
        "fraud_scenario": "card_testing" if is_fraud else None,
    }


def publish(bootstrap: str, records: list[tuple[str, Any]]) -> None:
    producer = make_producer(KafkaConnection(bootstrap))
    for topic, value in records:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        producer.produce(topic, raw, b"k")
    assert producer.flush(10) == 0


@pytest.fixture
def settings(stack: Stack, topic_factory: Callable[..., str]) -> Settings:
    names = {kind: topic_factory(kind, partitions=2) for kind in ("alerts", "decisions", "truth")}
    return Settings(
        kafka_bootstrap_servers=stack.bootstrap,
        topics=TopicNames(**names, feedback=topic_factory("feedback", partitions=2)),
    )


def feedback_of(settings: Settings) -> dict[str, dict[str, Any]]:
    validate = validator("feedback")
    found = {}
    for record in scan_topic(settings.kafka, settings.topics.feedback):
        value = validate(orjson.loads(record.value))
        assert record.key == value["transaction_id"].encode()
        assert value["transaction_id"] not in found, "one feedback record per transaction"
        found[value["transaction_id"]] = value
    return found


def test_analyst_command_labels_alerts_and_sends_chargebacks(settings: Settings) -> None:
    topics = settings.topics
    # Simulated traffic runs on its own clock, months behind the wall clock: labels are due at
    # once and stamped on that clock.
    past = datetime(2026, 3, 2, 10, tzinfo=UTC).timestamp()
    publish(
        settings.kafka_bootstrap_servers,
        [
            (topics.truth, truth("tx-a", True)),
            (topics.truth, truth("tx-b", False)),
            (topics.truth, truth("tx-c", True)),
            (topics.truth, truth("tx-d", False)),
            (topics.truth, truth("tx-e", True)),
            (topics.alerts, an_alert("tx-a", past)),
            (topics.alerts, an_alert("tx-b", past + 1)),
            (topics.alerts, an_alert("tx-e", time.time() + 3600)),  # not due within the run
            (topics.alerts, b"{broken"),
            (topics.decisions, a_decision("tx-a", "review", past)),
            (topics.decisions, a_decision("tx-c", "approve", past + 2)),  # approved fraud
            (topics.decisions, a_decision("tx-d", "approve", past + 3)),  # approved, genuine
        ],
    )
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "FRAUD_TOPIC_ALERTS": topics.alerts,
        "FRAUD_TOPIC_DECISIONS": topics.decisions,
        "FRAUD_TOPIC_TRUTH": topics.truth,
        "FRAUD_TOPIC_FEEDBACK": topics.feedback,
    }
    result = subprocess.run(
        [
            *(
                sys.executable,
                "-m",
                "fraud.cli",
                "analyst",
                "--from-beginning",
                "--duration",
                "3",
            ),
            *("--review-delay", "1", "--chargeback-delay", "2", "--error-rate", "0"),
            *("--daily-capacity", "0", "--analysts", "ann,bob"),
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = {
        " ".join(line.strip("│ ").rsplit("│", 1)[0].split()): line.rsplit("│", 2)[1].strip()
        for line in result.stdout.splitlines()
        if line.count("│") == 3
    }
    assert summary["labelled"] == "2" and summary["chargebacks"] == "1"
    assert summary["errors injected"] == "0" and summary["capacity dropped"] == "0"
    assert summary["pending"] == "1" and summary["invalid"] == "1"

    feedback = feedback_of(settings)
    assert sorted(feedback) == ["tx-a", "tx-b", "tx-c"]
    assert feedback["tx-a"]["label"] == "fraud" and feedback["tx-b"]["label"] == "legit"
    for tid in ("tx-a", "tx-b"):
        assert feedback[tid]["source"] == "analyst"
        assert feedback[tid]["analyst_id"] in {"ann", "bob"}
    assert feedback["tx-a"]["labelled_at"] == iso(past + 1).replace("Z", "000Z")
    assert feedback["tx-c"] == {
        "transaction_id": "tx-c",
        "label": "fraud",
        "analyst_id": "chargeback",
        "labelled_at": iso(past + 4).replace("Z", "000Z"),
        "source": "chargeback",
    }


def test_labels_wait_for_their_review_delay_and_capacity_holds(settings: Settings) -> None:
    topics = settings.topics
    decided = time.time()  # the alerts' event time: traffic on the wall clock, as a bank's
    publish(
        settings.kafka_bootstrap_servers,
        [(topics.truth, truth(f"tx-{i}", i % 2 == 0)) for i in range(4)]
        + [(topics.alerts, an_alert(f"tx-{i}", decided)) for i in range(4)],
    )
    sent: list[tuple[float, dict[str, Any]]] = []
    stop = threading.Event()
    config = AnalystConfig(
        review_delay_s=1.5, error_rate=0.0, daily_capacity=3, day_s=86_400.0, analysts=("ann",)
    )

    def collect(record: Any) -> None:
        sent.append((time.time(), dict(record)))
        if len(sent) == 3:
            stop.set()

    summary = run_analyst(
        settings, config, duration_s=10, from_beginning=True, stop=stop, on_feedback=collect
    )
    assert len(sent) == 3
    assert all(at >= decided + 1.5 - 0.001 for at, _ in sent)  # event_time has ms precision
    assert summary.labelled == 3 and summary.capacity_dropped == 1
    assert [r["label"] for _, r in sent] == ["fraud", "legit", "fraud"]
    assert feedback_of(settings) == {r["transaction_id"]: r for _, r in sent}
