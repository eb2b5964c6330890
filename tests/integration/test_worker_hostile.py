"""Hostile records on the real broker, through a real `fraud worker`.

1,000 valid transactions with one record of each hostile kind mixed in: every valid one is
decided, each hostile one gets one dead letter with its reason, every partition's committed
offset reaches its end, the same worker keeps deciding what comes after and stops cleanly on
SIGTERM. Also: a feedback batch with a bad record applies the good ones; an outage's backlog
with bad events in its traffic blocks nothing; /health stops reporting ready while a
partition cannot make progress, and reports ready again once it can.
"""

from __future__ import annotations

import random
import signal
from collections import Counter
from typing import Any

import httpx
import orjson
import pytest
import redis
from confluent_kafka import TopicPartition

from fraud.settings import KafkaConnection
from simulator import Bank, LiveTraffic
from stream.edge import luhn_check_digit
from stream.kafka_io import ensure_topics, make_admin, make_consumer, make_producer
from tests.support.worker import scrape, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAN_BODY = "411111111111111"
PAN = PAN_BODY + luhn_check_digit(PAN_BODY)


def _traffic(seed: int = 11) -> LiveTraffic:
    return LiveTraffic(Bank.build(400, seed), seed=seed)


def _hostile(valid: dict[str, Any]) -> list[tuple[bytes, str]]:
    """(payload, the dead-letter reason it must get), one of each kind."""
    head = orjson.dumps(valid)[:-1]
    deep = head + b',"n":' + b"[" * 300 + f'"card {PAN}"'.encode() + b"]" * 300 + b"}"
    escaped = head + b',"extra":{"note":"41111111\\u00311111111"}}'
    return [
        (deep, "too_deep"),
        (bytes(random.Random(1).randrange(256) for _ in range(800_000)), "too_large"),
        (orjson.dumps({**valid, "transaction_id": "tx-h-1", "timestamp": "2026-13-45T99:99:99Z"}), "schema"),
        (orjson.dumps({**valid, "transaction_id": "tx-h-2", "timestamp": "9999-12-31T23:59:59Z"}), "event_time"),
        (escaped.replace(valid["transaction_id"].encode(), b"tx-h-3"), "card_number"),
        (orjson.dumps({**valid, "amount": valid["amount"] + 1}), "duplicate_id"),
        (orjson.dumps({**valid, "transaction_id": "tx-h-4", **{f"k{i}": i for i in range(400)}}), "too_many_fields"),
        (orjson.dumps({**valid, "transaction_id": "tx-h-5", "note": "x" * 10_000}), "too_long"),
        (b'{"transaction_id": "tx-h-6", ', "invalid_json"),
        (b"[1, 2, 3]", "schema"),
    ]  # fmt: skip


def _send(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    producer = make_producer(KafkaConnection(bootstrap), {"message.max.bytes": 2_000_000})
    for key, value in records:
        producer.produce(topic, value, key)
    assert producer.flush(60) == 0


def _send_events(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    """Transactions as a producer sends them: keyed by card, JSON values."""
    _send(bootstrap, topic, [(e["card_id"].encode(), orjson.dumps(e)) for e in events])


def _committed_at_end(bootstrap: str, group: str, topic: str) -> bool:
    consumer = make_consumer(KafkaConnection(bootstrap), group)
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        for tp in committed:
            end = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)[1]
            if end > 0 and tp.offset != end:
                return False
        return True
    finally:
        consumer.close()


def test_hostile_records_mixed_into_traffic_stop_nothing(worker_env, consume_raw):
    traffic = _traffic()
    valid = traffic.next_batch(1000)[0]
    hostile = _hostile(valid[10])
    rng = random.Random(5)
    records: list[tuple[bytes | None, bytes]] = [
        (e["card_id"].encode(), orjson.dumps(e)) for e in valid
    ]
    for payload, _reason in hostile:
        records.insert(rng.randrange(20, len(records)), (b"hostile", payload))
    bootstrap, topics = worker_env.stack.bootstrap, worker_env.topics

    with worker_env.worker() as worker:
        _send(bootstrap, topics["transactions"], records)
        decisions = consume_raw(topics["decisions"], count=1000)
        dead = consume_raw(topics["dead_letter"], count=len(hostile))
        wait_until(
            lambda: _committed_at_end(bootstrap, worker_env.group, topics["transactions"]),
            60,
            "every partition's committed offset at its end",
        )
        # The same worker keeps deciding.
        after = traffic.next_batch(200)[0]
        _send_events(bootstrap, topics["transactions"], after)
        later = consume_raw(topics["decisions"], count=1200)
        metrics = scrape(worker)
        worker.popen.send_signal(signal.SIGTERM)
        code = worker.popen.wait(timeout=90)

    ids = Counter(orjson.loads(r.value)["transaction_id"] for r in decisions)
    assert set(ids) == {e["transaction_id"] for e in valid} and max(ids.values()) == 1
    reasons = Counter(orjson.loads(r.value)["reason"] for r in dead)
    assert reasons == Counter(reason for _, reason in hostile)
    assert all(len(r.value) < 16 * 1024 for r in dead)
    assert len({orjson.loads(r.value)["transaction_id"] for r in later}) == 1200
    assert metrics["fraud_batch_failures_total"] == 0
    assert code == 0, worker.log()[-3000:]


def test_feedback_with_a_bad_record_applies_the_good_ones(worker_env, consume_raw, redis_client):
    traffic = _traffic(12)
    valid = traffic.next_batch(50)[0]
    bootstrap, topics = worker_env.stack.bootstrap, worker_env.topics
    with worker_env.worker():
        _send_events(bootstrap, topics["transactions"], valid)
        consume_raw(topics["decisions"], count=50)
        good = {
            "transaction_id": valid[0]["transaction_id"],
            "label": "fraud",
            "analyst_id": "a.smith",
            "labelled_at": "2026-03-20T10:00:00Z",
            "source": "analyst",
        }
        bad = {
            **good,
            "transaction_id": valid[1]["transaction_id"],
            "labelled_at": "2026-02-30T10:00:00Z",
        }
        other = {**good, "transaction_id": valid[2]["transaction_id"]}
        _send(
            bootstrap,
            topics["feedback"],
            [(f["transaction_id"].encode(), orjson.dumps(f)) for f in (good, bad, other)],
        )
        dead = consume_raw(topics["dead_letter"], count=1)
        wait_until(
            lambda: (
                sum(
                    redis_client.hlen(key)
                    for key in redis_client.scan_iter(f"{worker_env.redis_prefix}:*tlabel:*")
                )
                == 2
            ),
            30,
            "both good labels applied",
        )
    [record] = [orjson.loads(r.value) for r in dead]
    assert (record["reason"], record["field"]) == ("schema", "labelled_at")


def test_health_reports_a_partition_that_cannot_make_progress(worker_env, consume_raw):
    """The decisions topic disappears: the batch's outputs cannot be delivered, its offsets
    stay uncommitted, /health says so; the topic returns and the worker catches up."""
    worker_env.extra["FRAUD_STALLED_BATCH_S"] = "3"
    traffic = _traffic(13)
    bootstrap, topics = worker_env.stack.bootstrap, worker_env.topics
    with worker_env.worker() as worker:
        first = traffic.next_batch(20)[0]
        _send_events(bootstrap, topics["transactions"], first)
        consume_raw(topics["decisions"], count=20)
        admin = make_admin(KafkaConnection(bootstrap))
        for future in admin.delete_topics([topics["decisions"]], operation_timeout=30).values():
            future.result()
        stuck = traffic.next_batch(20)[0]
        _send_events(bootstrap, topics["transactions"], stuck)

        def health() -> dict[str, Any]:
            response = httpx.get(worker.url("/health"), timeout=5)
            return {"status": response.status_code, **response.json()}

        stalled = wait_until(
            lambda: (lambda h: h if h["status"] == 503 and not h["progressing"] else None)(
                health()
            ),
            60,
            "/health not ready while a batch cannot be delivered",
        )
        ensure_topics(KafkaConnection(bootstrap), [topics["decisions"]], 4)
        wait_until(lambda: health()["status"] == 200, 90, "/health ready again")
        decided = consume_raw(topics["decisions"], count=20, timeout_s=60)
    assert stalled["oldest_batch_in_flight_s"] >= 3
    assert {orjson.loads(r.value)["transaction_id"] for r in decided} >= {
        e["transaction_id"] for e in stuck
    }


def test_an_outage_with_bad_events_in_its_traffic_blocks_nothing(
    worker_env, private_redis, consume_raw
):
    redis_server = private_redis()
    worker_env.extra.update({"REDIS_URL": redis_server.url, "FRAUD_REDIS_RETRY_S": "0.5"})
    traffic = _traffic(14)
    bootstrap, topics = worker_env.stack.bootstrap, worker_env.topics
    with worker_env.worker() as worker:
        before = traffic.next_batch(50)[0]
        _send_events(bootstrap, topics["transactions"], before)
        consume_raw(topics["decisions"], count=50)
        redis_server.stop()
        during = traffic.next_batch(50)[0]
        bad = [
            {**during[0], "transaction_id": "tx-bad-1", "timestamp": "2026-13-45T99:99:99Z"},
            {**during[1], "transaction_id": "tx-bad-2", "timestamp": "9999-12-31T23:59:59Z"},
        ]
        _send_events(bootstrap, topics["transactions"], [*during[:25], *bad, *during[25:]])
        consume_raw(topics["decisions"], count=100)
        redis_server.start()
        after = traffic.next_batch(50)[0]
        _send_events(bootstrap, topics["transactions"], after)
        decisions = consume_raw(topics["decisions"], count=150)
        dead = consume_raw(topics["dead_letter"], count=2)
        metrics = scrape(worker)
        with redis.Redis.from_url(redis_server.url) as client:
            recorded = sum(1 for _ in client.scan_iter(f"{worker_env.redis_prefix}*:tx:*", 1000))
    final = {orjson.loads(r.value)["transaction_id"]: orjson.loads(r.value) for r in decisions}
    assert all(not final[e["transaction_id"]]["degraded"] for e in after)
    assert sorted(orjson.loads(r.value)["reason"] for r in dead) == ["event_time", "schema"]
    assert metrics["fraud_degraded_backfilled_total"] == 50
    assert recorded == 150
