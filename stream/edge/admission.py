"""The edge of the stream: raw Kafka bytes in, a clean transaction or a dead-letter record out.

Errors are data: an input that cannot be decoded, breaks a limit or its contract becomes a
dead-letter record (reason, a message naming field and rule, where it came from, and a bounded,
masked copy of the input), so nothing vanishes and nothing crashes the worker. `admit` never
raises for any input bytes.

In order: the record's size, JSON, an object, the shape limits (depth, fields, string length)
and card numbers in one walk (stream/edge/limits.py), the schema, then the event time parsed
as a real UTC instant.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from fraud.errors import ValidationError
from fraud.times import utc_now_iso
from schemas import Validator
from stream.edge.limits import EdgeLimits, raw_may_hold_pan, walk
from stream.edge.pan import PanKey, mask_text, tokenize, tokenize_text

# A dead letter keeps at most this much of the input (with its size and a keyed digest of the
# whole), so that it always fits the topic's message size whatever the input was.
RAW_KEEP_BYTES = 2048
ERROR_KEEP_CHARS = 1024
_ASCII_ESCAPE = re.compile(r"\\u00([0-7][0-9a-fA-F])")
_TRAILING_DIGITS = re.compile(r"[0-9 .\-]+$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Source:
    topic: str
    partition: int
    offset: int
    # When the record entered Kafka (its timestamp, epoch seconds): latency counts from here.
    timestamp: float | None = None


@dataclass
class Admitted:
    event: dict[str, Any]
    source: Source
    tokenized_fields: list[str]
    # The event's `timestamp` as microseconds since the epoch (a real instant, checked).
    event_time_us: int = 0


@dataclass
class DeadLetter:
    reason: str
    record: dict[str, Any]
    source: Source


def readable_raw(raw: bytes) -> tuple[str, bool]:
    """At most RAW_KEEP_BYTES of `raw` as text a person can read and no decoder turns back into
    a card number: JSON escapes of ASCII characters decoded (an escaped digit hides nothing),
    card numbers masked, and a digit group cut by the truncation dropped. Returns the text and
    whether it was truncated."""
    truncated = len(raw) > RAW_KEEP_BYTES
    text = raw[:RAW_KEEP_BYTES].decode("utf-8", errors="replace")
    text = _ASCII_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    if truncated:
        text = _TRAILING_DIGITS.sub("", text)
    return mask_text(text), truncated


def dead_letter(
    reason: str,
    raw: bytes,
    source: Source,
    error: str,
    field: str | None = None,
    rule: str | None = None,
    *,
    key: bytes = b"",
    exception: str | None = None,
) -> DeadLetter:
    """A dead-letter record for `raw`. `key` makes `raw_digest` (HMAC-SHA256 of the whole input):
    a plain hash of an input holding a masked card number would let anyone recover the hidden
    digits by trying the million candidates."""
    text, truncated = readable_raw(raw)
    record: dict[str, Any] = {
        "reason": reason,
        "error": mask_text(error[:ERROR_KEEP_CHARS]),
        "field": None if field is None else mask_text(field[:200]),
        "rule": rule,
        "raw": text,
        "raw_size": len(raw),
        "raw_truncated": truncated,
        "raw_digest": _digest(raw, key),
        "source": {"topic": source.topic, "partition": source.partition, "offset": source.offset},
        "received_at": utc_now_iso(),
    }
    if exception is not None:
        record["exception"] = exception
    return DeadLetter(reason, record, source)


def _digest(raw: bytes, key: bytes) -> str:
    """HMAC-SHA256 in lower-case base32: a hex digest can hold a 13-digit run that a scanner
    (ours included) would take for a card number."""
    digest = hmac.new(key, raw, hashlib.sha256).digest()
    return base64.b32encode(digest).decode().rstrip("=").lower()


def instant_us(text: str) -> int | None:
    """An RFC 3339 timestamp (already matching the contract's pattern) as microseconds since the
    epoch, or None when it names no real instant (month 13, 30 February, year 0)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def admit(
    raw: bytes | None,
    source: Source,
    validate: Validator,
    pan_key: PanKey,
    limits: EdgeLimits = EdgeLimits(),
) -> Admitted | DeadLetter:
    """Decode, check limits, strip card numbers, validate and time one transaction payload."""
    raw = raw or b""

    def dead(reason: str, error: str, field: str | None = None, rule: str | None = None) -> Any:
        return dead_letter(reason, raw, source, error, field, rule, key=pan_key.secret)

    if len(raw) > limits.max_bytes:
        return dead("too_large", f"{len(raw)} bytes, more than {limits.max_bytes}", rule="size")
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return dead("invalid_json", f"not valid JSON: {exc}")
    if not isinstance(event, dict):
        return dead("schema", "transaction must be a JSON object", "<record>", "type")
    shape = walk(event, limits, look_for_pans=raw_may_hold_pan(raw), size=len(raw))
    if shape.broken is not None:
        reason, detail = shape.broken
        return dead(reason, detail, rule=reason)
    if shape.pan_elsewhere:
        # A card number outside a field that holds nothing else cannot be tokenised safely.
        return dead(
            "card_number",
            "payload contains a card number outside a tokenisable field",
            rule="no_pan",
        )
    for name in shape.pan_fields:
        value = event[name]
        if isinstance(value, str):
            event[name] = tokenize_text(value, pan_key)
        else:
            event[name] = tokenize(str(value), pan_key)
    try:
        validate(event)
    except ValidationError as exc:
        return dead("schema", str(exc), exc.field, exc.rule)
    event_time = instant_us(event["timestamp"])
    if event_time is None:
        return dead(
            "schema",
            f"timestamp {event['timestamp']!r} is not a real instant",
            "timestamp",
            "instant",
        )
    return Admitted(event, source, shape.pan_fields, event_time)
