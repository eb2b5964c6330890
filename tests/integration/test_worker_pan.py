"""Card numbers never leave the edge: raw PANs go in (as card_id, as a number, in other fields,
in free text, nested, in broken JSON, in feedback notes); afterwards every output topic, every
Redis key and value under the test's prefix and the worker's log are scanned for any
Luhn-valid 13-19 digit run. Only masked forms (first 6 / last 4) may appear, in dead letters."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest

from fraud.settings import KafkaConnection
from simulator.bank import Bank
from simulator.live import LiveTraffic
from simulator.malformed import card_number
from stream.edge import mask
from stream.features import string_key
from stream.kafka_io import make_producer
from tests.support.worker import luhn_runs, scrape, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _strings(value: Any) -> list[str]:
    """Every string, dict key and integral number inside a JSON document, as text. Fractional
    numbers are left out: their digits are measurements (scores, features), and a card number
    held in a JSON number is integral."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int):
        return [str(value)]
    if isinstance(value, float):
        return [str(int(value))] if value.is_integer() else []
    if isinstance(value, dict):
        return [text for k, v in value.items() for text in (k, *_strings(v))]
    return [text for item in value for text in _strings(item)]


def _json_leaks(payload: bytes) -> list[str]:
    return [run for text in _strings(orjson.loads(payload)) for run in luhn_runs(text)]


class Inputs:
    """The test's traffic: clean events, and events carrying the card numbers in `pans`."""

    def __init__(self, seed: int = 11) -> None:
        self.traffic = LiveTraffic(Bank.build(400, seed), seed)
        self.rng = np.random.default_rng(seed)
        self.records: list[tuple[bytes, bytes]] = []  # (key, value) for `transactions`
        self.feedback: list[tuple[bytes, bytes]] = []
        self.pans: list[str] = []
        self.expected_decisions = 0
        self.expected_dead: Counter[str] = Counter()

    def events(self, n: int) -> list[dict[str, Any]]:
        return self.traffic.next_batch(n)[0]

    def pan(self) -> str:
        self.pans.append(card_number(self.rng))
        return self.pans[-1]

    def add(self, event: dict[str, Any] | bytes, outcome: str, key: str | None = None) -> None:
        value = event if isinstance(event, bytes) else orjson.dumps(event)
        card = key or (event["card_id"] if isinstance(event, dict) else "k")
        self.records.append((str(card).encode(), value))
        if outcome == "decision":
            self.expected_decisions += 1
        else:
            self.expected_dead[outcome] += 1

    def build(self) -> None:
        for event in self.events(300):
            self.add(event, "decision")
        for event in self.events(15):  # an upstream system forgot to tokenise: key and card_id
            pan = self.pan()
            self.add(dict(event, card_id=pan), "decision", key=pan)
        for event in self.events(5):  # ... and sends it as a JSON number
            self.add(dict(event, card_id=int(self.pan())), "decision")
        for event in self.events(5):  # a top-level field holding only a card number
            self.add(dict(event, device_id=self.pan()), "decision")
        for event in self.events(5):  # inside free text: tokenised where it stands
            note = f"cardholder read out {self.pan()} on the phone"
            self.add(dict(event, note=note), "decision")
        for event in self.events(5):  # nested
            self.add(dict(event, extra={"payment": {"pan": self.pan()}}), "card_number")
        for event in self.events(5):  # broken JSON, cut just after the card number
            pan = self.pan()
            text = orjson.dumps(dict(event, card_id=pan))
            self.add(text[: text.index(pan.encode()) + len(pan) + 3], "invalid_json", key=pan)
        for event in self.events(5):  # tokenised, but the event breaks its contract
            broken = dict(event, card_id=self.pan())
            del broken["amount"]
            self.add(broken, "schema")

    def add_feedback(self, transaction_id: str) -> None:
        labelled_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        label = {
            "transaction_id": transaction_id,
            "label": "fraud",
            "analyst_id": "analyst-7",
            "labelled_at": labelled_at,
            "source": "analyst",
            "note": f"customer confirmed card {self.pan()} was stolen",
        }
        self.feedback.append((transaction_id.encode(), orjson.dumps(label)))
        # An unusable label (unknown value) with a card number in its note: dead-lettered.
        bad = dict(label, label="maybe", note=f"not sure about {self.pan()}")
        self.feedback.append((transaction_id.encode(), orjson.dumps(bad)))
        self.expected_dead["schema"] += 1


def _send(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = make_producer(KafkaConnection(bootstrap))
    for key, value in records:
        producer.produce(topic, value, key)
    assert producer.flush(30) == 0


def _redis_leaks(client: Any, prefix: str, tx_keys: set[int], start_us: int, end_us: int) -> dict:
    """Card-number-like runs in the keys and values under `prefix`. Sorted-set members and
    label values are numbers by construction (a transaction's 64-bit key; "<time µs>,<time
    µs>,<flag>"): they are checked to be exactly that, then left out of the digit scan (a
    16-digit microsecond time passes Luhn one time in ten)."""
    leaks: dict[str, list[str]] = {}
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    assert keys, f"no Redis keys under {prefix}"
    for key in keys:
        found = luhn_runs(key)
        kind = client.type(key)
        if kind == b"string":
            found += luhn_runs(client.get(key))
        elif kind == b"zset":
            for member, score in client.zrange(key, 0, -1, withscores=True):
                assert int(member) in tx_keys and start_us <= score <= end_us, (member, score)
        elif kind == b"hash":
            for field_name, value in client.hgetall(key).items():
                found += luhn_runs(field_name)
                ts, labelled_at, flag = (int(part) for part in value.split(b","))
                assert start_us <= ts <= end_us and start_us <= labelled_at <= end_us, value
                assert flag in (0, 1), value
        else:
            raise AssertionError(f"unexpected Redis type {kind!r} at {key!r}")
        if found:
            leaks[key.decode(errors="replace")] = found
    return leaks


def test_no_card_number_leaves_the_edge(worker_env, consume_raw, redis_client):
    inputs = Inputs()
    inputs.build()
    # Stored times lie between the traffic's simulated start and now (the label's labelled_at).
    start_us = int(inputs.traffic.start.timestamp() * 1e6) - 60_000_000
    bootstrap, topics = worker_env.stack.bootstrap, worker_env.topics

    with worker_env.worker() as worker:
        _send(bootstrap, topics["transactions"], inputs.records)
        decisions = consume_raw(topics["decisions"], count=inputs.expected_decisions)
        decided = [orjson.loads(record.value) for record in decisions]
        labelled = next(d["transaction_id"] for d in decided if d["card_id"].startswith("tok_"))
        inputs.add_feedback(labelled)
        _send(bootstrap, topics["feedback"], inputs.feedback)
        wait_until(
            lambda: list(redis_client.scan_iter(f"{worker_env.redis_prefix}:*tlabel:*")),
            30,
            "the label applied to the terminal aggregates",
        )
        dead = consume_raw(topics["dead_letter"], count=sum(inputs.expected_dead.values()))
        alerts = consume_raw(topics["alerts"])
        metrics = scrape(worker)
    end_us = int(time.time() * 1e6) + 60_000_000

    # Every input came out once: decided (tokenised where it could be) or dead-lettered.
    assert len(decided) == len({d["transaction_id"] for d in decided}) == inputs.expected_decisions
    assert Counter(orjson.loads(r.value)["reason"] for r in dead) == inputs.expected_dead
    assert sum(d["card_id"].startswith("tok_") for d in decided) == 20
    assert metrics["fraud_pan_tokenized_total"] == 30  # 15 + 5 card ids, 5 devices, 5 notes
    assert alerts, "no alerts: the scan would miss that topic"

    leaks = {}
    for name, records in (("decisions", decisions), ("alerts", alerts), ("dead letters", dead)):
        for record in records:
            found = _json_leaks(record.value) + luhn_runs(record.key or b"")
            if found:
                leaks[f"{name} offset {record.partition}:{record.offset}"] = found
    sent_ids = {orjson.loads(v)["transaction_id"] for _, v in inputs.records if v.endswith(b"}")}
    tx_keys = {string_key(tx) for tx in sent_ids}
    leaks |= _redis_leaks(redis_client, worker_env.redis_prefix, tx_keys, start_us, end_us)
    log = worker.log()
    if luhn_runs(log):
        leaks["worker log"] = luhn_runs(log)
    assert not leaks, leaks

    # Belt and braces: not one of the card numbers sent, in any byte of any output.
    redis_keys = redis_client.scan_iter(f"{worker_env.redis_prefix}:*")
    everything = b"".join(
        [r.value + (r.key or b"") for r in decisions + alerts + dead]
        + [key + _redis_bytes(redis_client, key) for key in redis_keys]
        + [log.encode()]
    )
    assert not [pan for pan in inputs.pans if pan.encode() in everything]
    # Dead letters keep the masked form, so the event can still be traced: the 15 events that
    # could not be decided and the unusable label (the valid label's number is dropped).
    dead_raw = b"".join(r.value for r in dead).decode()
    dead_lettered = [*inputs.pans[30:45], inputs.pans[46]]
    assert [pan for pan in dead_lettered if mask(pan) not in dead_raw] == []


def _redis_bytes(client: Any, key: bytes) -> bytes:
    kind = client.type(key)
    if kind == b"string":
        return client.get(key)
    if kind == b"zset":
        return b"".join(client.zrange(key, 0, -1))
    if kind == b"hash":
        return b"".join(k + v for k, v in client.hgetall(key).items())
    return b""
