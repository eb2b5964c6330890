"""Property-based fuzzing of the worker's real batch path with a real Redis.

Hypothesis generates transaction and feedback payloads of every hostile kind (structure,
encodings, sizes, depth, numbers, times, card numbers written every way, reused ids) mixed with
valid traffic, in batches, through `BatchHandler` with the Redis feature store. Every batch:
no exception escapes; every transaction input gets exactly one decision or exactly one dead
letter; no card number reaches decisions, alerts, dead letters, logs, or Redis keys and values.
A summary (inputs by kind, outputs by reason) is written to .state/test-artifacts/.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import Counter
from typing import Any

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraud.settings import Settings
from stream.edge import Source, contains_pan, luhn_check_digit
from stream.features import RedisFeatureStore
from stream.worker import BatchHandler, RawMessage, ScorerMetrics
from stream.worker.testing import MemoryProducer, fixed_model, holding
from tests.support.stack import ROOT

pytestmark = pytest.mark.integration

BATCHES = 250
BATCH_SIZE = 40  # 10,000 transaction inputs, plus feedback
WALL = time.time()


def _pan(seed: int) -> str:
    body = "4" + f"{seed * 7919 % 10**14:014d}"
    return body + luhn_check_digit(body)


PANS = [_pan(i) for i in range(1, 40)]
PAN_DIGITS = set(PANS)


def _written(pan: str, how: int) -> str:
    groups = [pan[i : i + 4] for i in range(0, 16, 4)]
    return [
        pan,
        " ".join(groups),
        "-".join(groups),
        ".".join(groups),
        "".join(chr(0xFF10 + int(d)) for d in pan),  # fullwidth digits
        pan[:8] + "\\u00" + format(0x30 + int(pan[8]), "02x") + pan[9:],  # an escaped digit
    ][how % 6]


def _valid(rng: random.Random, i: int) -> dict[str, Any]:
    stamp = 1_772_400_000 + rng.randrange(0, 86_400 * 3)
    return {
        "transaction_id": f"tx-{i}-{rng.randrange(10**9)}",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp))
        + f".{rng.randrange(10**6):06d}Z",
        "card_id": f"card-{rng.randrange(300)}",
        "customer_id": f"cust-{rng.randrange(300)}",
        "terminal_id": f"term-{rng.randrange(50)}",
        "merchant_category": rng.choice(["5411", "5812", "6011", "5999"]),
        "channel": rng.choice(["pos", "ecom", "atm"]),
        "amount": round(rng.uniform(0.5, 3000), 2),
        "currency": "EUR",
        # Full double precision, as most JSON encoders write coordinates.
        "terminal_lat": rng.uniform(-90, 90),
        "terminal_lon": rng.uniform(-180, 180),
        "customer_lat": rng.uniform(-90, 90),
        "customer_lon": rng.uniform(-180, 180),
        "device_id": f"dev-{rng.randrange(16**16):016x}",
    }


def _hostile(rng: random.Random, kind: str, base: dict[str, Any], previous: list[bytes]) -> bytes:
    pan = _written(rng.choice(PANS), rng.randrange(6))
    if kind == "binary":
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))
    if kind == "huge":
        return b'{"x": "' + b"9" * rng.randrange(70_000, 300_000) + b'"}'
    if kind == "deep":
        depth = rng.choice([9, 100, 254, 300, 1200])
        head = orjson.dumps(base)[:-1]
        return head + b',"n":' + b"[" * depth + f'"{pan}"'.encode() + b"]" * depth + b"}"
    if kind == "wide":
        return orjson.dumps({**base, **{f"k{i}": i for i in range(rng.randrange(300, 900))}})
    if kind == "long_string":
        return orjson.dumps({**base, "note": "a" * rng.randrange(5000, 60_000)})
    if kind == "bad_time":
        stamp = rng.choice(
            ["2026-13-45T99:99:99Z", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
             "2026-02-30T10:00:00Z", "1970-01-01T00:00:00Z", "2031-01-01T00:00:00Z"]
        )  # fmt: skip
        return orjson.dumps({**base, "timestamp": stamp})
    if kind == "pan_top":
        field = rng.choice(["card_id", "device_id", "note", "account"])
        return orjson.dumps({**base, field: pan}).replace(b"\\\\u00", b"\\u00")
    if kind == "pan_nested":
        where = rng.choice([{"a": {"b": pan}}, [pan], {"n": [int(rng.choice(PANS))]}])
        return orjson.dumps({**base, "extra": where}).replace(b"\\\\u00", b"\\u00")
    if kind == "pan_integer":
        return orjson.dumps({**base, "card_id": int(rng.choice(PANS))})
    if kind == "wrong_types":
        field = rng.choice(list(base))
        junk = rng.choice([None, [], {}, True, -1, 1e308, "", "x" * 200])
        return orjson.dumps({**base, field: junk})
    if kind == "not_object":
        return rng.choice([b"[]", b"null", b"42", b'"text"', b"", b"{", b"\xff\xfe"])
    if kind == "reused_id" and previous:
        original = orjson.loads(previous[rng.randrange(len(previous))])
        if isinstance(original, dict) and rng.random() < 0.5:
            original["amount"] = round(float(original.get("amount", 1.0)) + 1.0, 2)
        return orjson.dumps(original)
    return orjson.dumps(base)


KINDS = [
    "binary", "huge", "deep", "wide", "long_string", "bad_time", "pan_top", "pan_nested",
    "pan_integer", "wrong_types", "not_object", "reused_id",
]  # fmt: skip


def _feedback(rng: random.Random, decided: list[str]) -> tuple[str, bytes]:
    label = {
        "transaction_id": rng.choice(decided) if decided else "tx-none",
        "label": rng.choice(["fraud", "legit"]),
        "analyst_id": rng.choice(["a.smith", "chargeback", "mallory"]),
        "labelled_at": "2026-03-05T10:00:00Z",
        "source": rng.choice(["analyst", "chargeback"]),
    }
    kind = rng.choice(["valid", "bad_date", "future", "early", "garbage", "pan", "deep"])
    if kind == "bad_date":
        label["labelled_at"] = "2026-02-30T10:00:00Z"
    elif kind == "future":
        label["labelled_at"] = "9999-01-01T00:00:00Z"
    elif kind == "early":
        label["labelled_at"] = "2000-01-02T00:00:00Z"
    elif kind == "garbage":
        return kind, bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
    elif kind == "pan":
        label["note"] = _written(rng.choice(PANS), rng.randrange(6))
    elif kind == "deep":
        return kind, b'{"a":' * 500 + b"1" + b"}" * 500
    return kind, orjson.dumps(label).replace(b"\\\\u00", b"\\u00")


def _leaks(text: str) -> bool:
    digits_only = "".join(ch for ch in text if ch.isdigit())
    return contains_pan(text) or any(pan in digits_only for pan in PAN_DIGITS)


class Tally:
    def __init__(self) -> None:
        self.inputs: Counter[str] = Counter()
        self.outputs: Counter[str] = Counter()
        self.exceptions = 0
        self.pans_found = 0
        self.seconds = 0.0
        self.largest_dead_letter = 0
        self.sent: list[bytes] = []  # valid inputs of earlier batches, for reused ids


@pytest.fixture(scope="module")
def fuzz_target(stack: Any) -> Any:
    client = redis.Redis.from_url(stack.redis_url)
    prefix = f"fuzz-{random.randrange(10**9)}"
    store = RedisFeatureStore(client, prefix)
    settings_ = Settings(redis_url=stack.redis_url, redis_prefix=prefix)
    producer = MemoryProducer()
    handler = BatchHandler(settings_, store, holding(fixed_model()), producer, ScorerMetrics())
    tally = Tally()
    yield handler, producer, store, client, tally
    _write_summary(tally)
    store.clear()


def _write_summary(tally: Tally) -> None:
    folder = ROOT / ".state" / "test-artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    summary = {
        "inputs_by_kind": dict(sorted(tally.inputs.items())),
        "transaction_inputs": sum(v for k, v in tally.inputs.items() if not k.startswith("fb:")),
        "outputs": dict(sorted(tally.outputs.items())),
        "exceptions": tally.exceptions,
        "card_numbers_found": tally.pans_found,
        "seconds_in_handler": round(tally.seconds, 2),
        "largest_dead_letter_bytes": tally.largest_dead_letter,
    }
    (folder / "fuzz_summary.json").write_text(json.dumps(summary, indent=2))


@settings(
    max_examples=BATCHES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1), share=st.floats(0.05, 0.6))
def test_hostile_batches_never_escape_and_never_leak(
    fuzz_target: Any, seed: int, share: float, caplog: pytest.LogCaptureFixture
) -> None:
    handler, producer, _store, _client, tally = fuzz_target
    rng = random.Random(seed)
    payloads: list[bytes] = []
    previous = tally.sent[-200:]
    kinds = []
    for i in range(BATCH_SIZE):
        base = _valid(rng, seed * 100 + i)
        kind = rng.choice(KINDS) if rng.random() < share else "valid"
        payloads.append(
            _hostile(rng, kind, base, previous) if kind != "valid" else orjson.dumps(base)
        )
        kinds.append(kind)
    tally.inputs.update(kinds)
    tally.sent.extend(p for p, kind in zip(payloads, kinds, strict=True) if kind == "valid")
    offset = len(producer.records) * 3
    messages = [
        RawMessage(p, Source("transactions", seed % 4, offset + n, WALL))
        for n, p in enumerate(payloads)
    ]
    before = len(producer.records)
    started = time.perf_counter()
    with caplog.at_level(logging.DEBUG):
        try:
            asyncio.run(handler.handle(messages))
        except Exception:
            tally.exceptions += 1
            raise
        decided = [
            orjson.loads(v)["transaction_id"]
            for t, _k, v in producer.records[before:]
            if t == "decisions"
        ]
        fb_inputs = [_feedback(rng, decided) for _ in range(8)]
        tally.inputs.update(f"fb:{kind}" for kind, _ in fb_inputs)
        fb_before = len(producer.records)
        try:
            asyncio.run(
                handler.handle_feedback(
                    [
                        RawMessage(raw, Source("feedback", 0, offset + n, WALL))
                        for n, (_kind, raw) in enumerate(fb_inputs)
                    ]
                )
            )
        except Exception:
            tally.exceptions += 1
            raise
    tally.seconds += time.perf_counter() - started

    outputs = producer.records[before:fb_before]
    per_topic = Counter(topic for topic, _k, _v in outputs)
    # Exactly one decision or one dead letter per transaction input.
    assert per_topic["decisions"] + per_topic["transactions.dlq"] == len(payloads)
    for topic, key, value in producer.records[before:]:
        record = orjson.loads(value)
        if topic == "transactions.dlq":
            tally.outputs[f"dead_letter:{record['reason']}"] += 1
            tally.largest_dead_letter = max(tally.largest_dead_letter, len(value))
            assert len(value) < 16 * 1024
        else:
            tally.outputs[topic] += 1
        text = value.decode() + (key or b"").decode(errors="replace")
        if _leaks(text):
            tally.pans_found += 1
        assert not _leaks(text), text[:500]
    log_text = "\n".join(r.getMessage() for r in caplog.records)
    assert not _leaks(log_text)


def test_no_card_number_reached_redis(fuzz_target: Any) -> None:
    """Every key and value the fuzzed batches left in Redis, scanned."""
    _handler, _producer, store, client, tally = fuzz_target
    keys = list(client.scan_iter(match=f"{store.key_prefix}*", count=1000))
    assert keys, "the fuzz run stored nothing"
    for key in keys:
        values: list[bytes] = []
        kind = client.type(key)
        if kind == b"string":
            values = [client.get(key) or b""]
        elif kind == b"hash":
            values = [b"%s=%s" % pair for pair in client.hgetall(key).items()]
        elif kind == b"zset":
            values = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        name = key.decode(errors="replace")
        # Values hold packed numbers and microsecond times (16-digit runs by nature): they are
        # searched for the card numbers the inputs carried; keys are scanned for any.
        leaked = contains_pan(name) or any(
            pan.encode() in value for value in values for pan in PAN_DIGITS
        )
        tally.pans_found += leaked
        assert not leaked, (name, values[:3])
