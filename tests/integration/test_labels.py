"""`fraud label` and the retraining readers against the real broker, with hand-written decisions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from confluent_kafka import TopicPartition

from fraud.errors import ConfigError
from fraud.settings import KafkaConnection, Settings, TopicNames
from schemas import validator
from stream.feedback import find_decision, scan_topic
from stream.kafka_io import make_consumer, make_producer
from tests.support.stack import ROOT, Stack
from training.retrain import load_labelled_set

pytestmark = pytest.mark.integration


def a_decision(tid: str, event_time: str = "2026-03-01T10:00:00.000Z", **changes: Any) -> dict:
    decision = {
        "transaction_id": tid,
        "card_id": "card-00042",
        "event_time": event_time,
        "decided_at": event_time,
        "score": 0.8125,
        "decision": "review",
        "thresholds": {"review": 0.5, "decline": 0.9},
        "model": {"name": "fraud-detector", "version": "7", "alias": "champion"},
        "features": {"amount": 312.5, "card_velocity_1h": 3.0, "terminal_fraud_rate_28d": None},
        "reason_codes": [{"feature": "amount", "value": 312.5, "contribution": 0.4}],
        "latency_ms": 4.2,
        "degraded": False,
    }
    decision.update(changes)
    return validator("decision")(decision)


def publish(bootstrap: str, topic: str, values: list[bytes], key: bytes = b"card-00042") -> None:
    producer = make_producer(KafkaConnection(bootstrap))
    for value in values:
        producer.produce(topic, value, key)
    assert producer.flush(10) == 0


def records_in(bootstrap: str, topic: str) -> int:
    """Records the topic holds (sum of high watermarks; the test topics start at offset 0)."""
    consumer = make_consumer(KafkaConnection(bootstrap), "watermarks")
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in metadata.topics[topic].partitions
        )
    finally:
        consumer.close()


def fraud_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fraud.cli", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def topics(stack: Stack, topic_factory: Callable[..., str]) -> dict[str, str]:
    decisions, feedback = topic_factory("decisions"), topic_factory("feedback")
    decoys = [a_decision(f"tx-1{i}") for i in range(5)]  # ids that contain "tx-1"
    publish(
        stack.bootstrap,
        decisions,
        [orjson.dumps(d) for d in decoys]
        + [b"not json mentioning tx-1", json.dumps(a_decision("tx-1", score=0.875)).encode()],
    )
    return {
        "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
        "FRAUD_TOPIC_DECISIONS": decisions,
        "FRAUD_TOPIC_FEEDBACK": feedback,
    }


def test_label_publishes_exactly_one_valid_feedback_record(
    stack: Stack, topics: dict[str, str]
) -> None:
    before = datetime.now(UTC)
    result = fraud_cli(
        topics, "label", "tx-1", "--fraud", "--analyst", "jane.doe", "--note", "card stolen"
    )
    assert result.returncode == 0, result.stderr
    assert "labelled tx-1 fraud (decision review, score 0.875" in result.stdout
    feedback = topics["FRAUD_TOPIC_FEEDBACK"]
    assert records_in(stack.bootstrap, feedback) == 1
    (message,) = scan_topic(stack.kafka, feedback, timeout_s=30)
    assert message.key == b"tx-1"
    record = validator("feedback")(orjson.loads(message.value))
    labelled_at = datetime.fromisoformat(record.pop("labelled_at").replace("Z", "+00:00"))
    assert record == {
        "transaction_id": "tx-1",
        "label": "fraud",
        "analyst_id": "jane.doe",
        "source": "analyst",
        "note": "card stolen",
    }
    assert before <= labelled_at <= datetime.now(UTC)
    assert f"at offset {message.offset}" in result.stdout


def test_label_at_a_given_time_and_never_before_the_transaction(
    stack: Stack, topics: dict[str, str]
) -> None:
    """`--at` dates the verdict on the transactions' clock (simulated traffic); a verdict dated
    before its transaction (event time 2026-03-01T10:00Z here) is refused, nothing published."""
    feedback = topics["FRAUD_TOPIC_FEEDBACK"]
    early = fraud_cli(
        topics, "label", "tx-1", "--fraud", "--analyst", "jane.doe", "--at", "2026-03-01T09:59:59Z"
    )
    assert early.returncode == 2
    assert "is before the transaction's event time 2026-03-01T10:00:00.000Z" in early.stderr
    assert records_in(stack.bootstrap, feedback) == 0

    result = fraud_cli(
        topics,
        "label",
        "tx-1",
        "--fraud",
        "--analyst",
        "jane.doe",
        "--at",
        "2026-03-01T14:00:00+02:00",
    )
    assert result.returncode == 0, result.stderr
    (message,) = scan_topic(stack.kafka, feedback, timeout_s=30)
    assert orjson.loads(message.value)["labelled_at"] == "2026-03-01T12:00:00.000000Z"


def test_label_of_an_unknown_transaction_exits_non_zero_and_publishes_nothing(
    stack: Stack, topics: dict[str, str]
) -> None:
    result = fraud_cli(topics, "label", "tx-2", "--legit", "--analyst", "jane.doe")
    assert result.returncode == 2
    assert "no decision for transaction 'tx-2'" in result.stderr
    assert "nothing was published" in result.stderr
    assert records_in(stack.bootstrap, topics["FRAUD_TOPIC_FEEDBACK"]) == 0


def test_label_names_a_missing_topic(stack: Stack, topics: dict[str, str]) -> None:
    env = {**topics, "FRAUD_TOPIC_DECISIONS": "no-such-topic-for-labels"}
    result = fraud_cli(env, "label", "tx-1", "--legit", "--analyst", "jane.doe")
    assert result.returncode == 2
    assert "topic 'no-such-topic-for-labels' does not exist" in result.stderr
    assert records_in(stack.bootstrap, topics["FRAUD_TOPIC_FEEDBACK"]) == 0


def test_find_decision_matches_whole_ids_and_ids_a_json_encoder_escapes(
    stack: Stack, topics: dict[str, str]
) -> None:
    decisions = topics["FRAUD_TOPIC_DECISIONS"]
    publish(
        stack.bootstrap,
        decisions,
        [json.dumps(a_decision('tx-é/"q"')).encode()],  # written as \u00e9, \" by json
    )
    found = find_decision(stack.kafka, decisions, "tx-1", timeout_s=30)
    assert found is not None and found["score"] == 0.875
    assert find_decision(stack.kafka, decisions, "tx-", timeout_s=30) is None
    escaped = find_decision(stack.kafka, decisions, 'tx-é/"q"', timeout_s=30)
    assert escaped is not None and escaped["transaction_id"] == 'tx-é/"q"'
    with pytest.raises(ConfigError, match="does not exist"):
        find_decision(stack.kafka, "no-such-topic-for-labels", "tx-1", timeout_s=10)


def test_load_labelled_set_reads_both_topics_to_their_end(
    stack: Stack, topic_factory: Callable[..., str]
) -> None:
    decisions, feedback = topic_factory("decisions"), topic_factory("feedback")
    old = (datetime.now(UTC) - timedelta(days=10)).isoformat().replace("+00:00", "Z")
    new = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    publish(
        stack.bootstrap,
        decisions,
        [
            orjson.dumps(a_decision("tx-old", old)),
            orjson.dumps(a_decision("tx-new", new)),
            orjson.dumps(a_decision("tx-unlabelled", old)),
        ],
    )

    def label(tid: str, verdict: str, at: str) -> bytes:
        value = {"transaction_id": tid, "label": verdict, "analyst_id": "a1"}
        return orjson.dumps({**value, "labelled_at": at, "source": "analyst"})

    for tid, values in {
        "tx-old": [label("tx-old", "legit", old), label("tx-old", "fraud", new)],
        "tx-new": [label("tx-new", "fraud", new)],
        "tx-gone": [label("tx-gone", "fraud", new)],
    }.items():
        publish(stack.bootstrap, feedback, values, key=tid.encode())
    settings = Settings(
        kafka_bootstrap_servers=stack.bootstrap,
        topics=TopicNames(decisions=decisions, feedback=feedback),
        label_delay_days=7,
    )
    started = time.monotonic()
    frame, report = load_labelled_set(settings)
    assert time.monotonic() - started < 30
    assert frame[["transaction_id", "label", "source", "model_version"]].to_dict("records") == [
        {"transaction_id": "tx-old", "label": 1, "source": "analyst", "model_version": "7"}
    ]
    assert frame.loc[0, "amount"] == 312.5 and frame.loc[0, "card_velocity_1h"] == 3.0
    assert report.feedback_read == 4 and report.conflict_ids == ["tx-old"]
    assert report.too_recent == 1 and report.without_decision == 1
    assert sum(r.last - r.first + 1 for r in report.feedback_offsets.values()) == 4
