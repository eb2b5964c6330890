"""`fraud produce` against the real broker: events, keys, ground truth and malformed events."""

from __future__ import annotations

import ast
import datetime as dt
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable

import orjson
import pytest

from fraud.errors import ValidationError
from fraud.settings import KafkaConnection
from schemas import validator
from stream.edge import luhn_valid
from stream.kafka_io import make_consumer
from tests.support.stack import ROOT, Stack

pytestmark = pytest.mark.integration


def fraud_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fraud.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def consume_all(
    bootstrap: str, group: str, topics: list[str], expected: int, timeout_s: float = 30.0
) -> dict[str, list[tuple[str, bytes]]]:
    """(key, value) of every record of `topics`, until `expected` records or the timeout."""
    consumer = make_consumer(KafkaConnection(bootstrap), group)
    consumer.subscribe(topics)
    received: dict[str, list[tuple[str, bytes]]] = {topic: [] for topic in topics}
    deadline = time.monotonic() + timeout_s
    try:
        while sum(map(len, received.values())) < expected and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                assert message.error() is None, message.error()
                received[message.topic()].append((message.key().decode(), message.value()))
    finally:
        consumer.close()
    return received


def epoch(timestamp: str) -> float:
    return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def test_produce_publishes_valid_events_keyed_by_card_with_ground_truth(
    stack: Stack, topic_factory: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    events_topic, truth_topic = topic_factory("tx"), topic_factory("truth")
    began = time.time()
    result = fraud_cli(
        *("produce", "--rate", "400", "--duration", "2", "--customers", "800", "--seed", "2"),
        *("--topic", events_topic, "--truth-topic", truth_topic, "--bootstrap", stack.bootstrap),
    )
    ended = time.time()
    assert result.returncode == 0, result.stderr
    assert "sent 800 events" in result.stdout and "delivery errors 0" in result.stdout
    received = consume_all(stack.bootstrap, unique_name("g"), [events_topic, truth_topic], 1600)
    assert len(received[events_topic]) == len(received[truth_topic]) == 800

    validate = validator("transaction")
    events = {}
    for key, value in received[events_topic]:
        event = validate(orjson.loads(value))
        assert key == event["card_id"]
        assert re.fullmatch(r"card-\d{5}", key)
        events[event["transaction_id"]] = event
    truth = {}
    for key, value in received[truth_topic]:
        record = orjson.loads(value)
        assert key == record["transaction_id"]
        assert set(record) == {"transaction_id", "is_fraud", "fraud_scenario"}
        assert (record["fraud_scenario"] is None) == (record["is_fraud"] == 0)
        truth[key] = record
    assert set(truth) == set(events)
    # Stamped with simulated time, continuing the default history from 2026-03-02: 800 events
    # of an 800-customer bank (~1,800 a day) span hours of it, not the 2 s of sending.
    stamps = sorted(epoch(event["timestamp"]) for event in events.values())
    live_start = dt.datetime(2026, 3, 2, tzinfo=dt.UTC).timestamp()
    assert live_start <= stamps[0] < live_start + 3600
    assert 3 * 3600 < stamps[-1] - stamps[0] < 86_400
    span = re.search(r"simulated time (\S+) \.\. (\S+)", result.stdout)
    assert span, result.stdout
    assert (epoch(span.group(1)), epoch(span.group(2))) == (stamps[0], stamps[-1])
    # The Kafka record timestamp is the moment of sending.
    consumer = make_consumer(stack.kafka, unique_name("ts"))
    consumer.subscribe([events_topic])
    sent_at: list[float] = []
    deadline = time.monotonic() + 30
    while not sent_at and time.monotonic() < deadline:
        sent_at = [m.timestamp()[1] / 1000 for m in consumer.consume(100, timeout=1)]
    consumer.close()
    assert sent_at and all(began - 1 <= moment <= ended + 1 for moment in sent_at)


def _classify(payload: bytes) -> str:
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return "invalid_json"
    try:
        validator("transaction")(event)
    except ValidationError as exc:
        if exc.field == "card_id" and exc.rule == "pattern":
            assert luhn_valid(event["card_id"]) and len(event["card_id"]) == 16
            return "card_number"
        return "missing_field" if exc.rule == "required" else "bad_value"
    return "valid"


def test_malformed_rate_mixes_in_every_kind_of_bad_event_without_truth(
    stack: Stack, topic_factory: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    events_topic, truth_topic = topic_factory("tx"), topic_factory("truth")
    result = fraud_cli(
        *("produce", "--rate", "300", "--duration", "2", "--malformed-rate", "0.4"),
        *("--customers", "500", "--topic", events_topic, "--truth-topic", truth_topic),
        *("--bootstrap", stack.bootstrap, "--start", "2026-07-14T09:30:00+02:00"),
    )
    assert result.returncode == 0, result.stderr
    printed = re.search(r"malformed (\d+) (\{.*\})", result.stdout)
    assert printed, result.stdout
    printed_kinds = ast.literal_eval(printed.group(2))
    malformed_total = int(printed.group(1))

    received = consume_all(
        stack.bootstrap, unique_name("g"), [events_topic, truth_topic], 600 + 600 - malformed_total
    )
    kinds = Counter(_classify(value) for _, value in received[events_topic])
    assert sum(kinds.values()) == 600
    assert {k: v for k, v in kinds.items() if k != "valid"} == printed_kinds
    assert set(printed_kinds) == {"invalid_json", "missing_field", "bad_value", "card_number"}
    assert 0.25 < malformed_total / 600 < 0.55
    # Only valid events have ground truth.
    valid_ids = {
        orjson.loads(value)["transaction_id"]
        for _, value in received[events_topic]
        if _classify(value) == "valid"
    }
    assert {key for key, _ in received[truth_topic]} == valid_ids
    # --start sets the simulated clock: every valid event is at or after it.
    stamps = [
        epoch(orjson.loads(value)["timestamp"])
        for _, value in received[events_topic]
        if _classify(value) == "valid"
    ]
    start = dt.datetime(2026, 7, 14, 7, 30, tzinfo=dt.UTC).timestamp()
    assert start <= min(stamps) < start + 3600


def test_wrong_broker_address_fails_fast_with_a_clear_message() -> None:
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    began = time.monotonic()
    result = fraud_cli(
        "produce", "--rate", "10", "--duration", "1", "--bootstrap", f"127.0.0.1:{port}"
    )
    assert result.returncode != 0
    assert time.monotonic() - began < 15
    assert "no Kafka broker" in result.stderr and "make services" in result.stderr
