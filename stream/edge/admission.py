"""The edge of the stream: raw Kafka bytes in, a clean transaction or a dead-letter record out.

Errors are data: an event that cannot be decoded or breaks its contract becomes a dead-letter
record (reason, message naming field and rule, the raw payload with card numbers masked, and
where it came from), so nothing vanishes and nothing crashes the worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from fraud.errors import ValidationError
from fraud.times import utc_now_iso
from schemas import Validator
from stream.edge import pan


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


@dataclass
class DeadLetter:
    reason: str
    record: dict[str, Any]
    source: Source


def dead_letter(
    reason: str,
    raw: bytes,
    source: Source,
    error: str,
    field: str | None = None,
    rule: str | None = None,
) -> DeadLetter:
    text = raw.decode("utf-8", errors="replace")
    record = {
        "reason": reason,
        "error": pan.mask_text(error),
        "field": field,
        "rule": rule,
        "raw": pan.mask_text(text),
        "source": {"topic": source.topic, "partition": source.partition, "offset": source.offset},
        "received_at": utc_now_iso(),
    }
    return DeadLetter(reason, record, source)


def _has_luhn_run(text: str) -> bool:
    return pan.mask_text(text) != text


def admit(
    raw: bytes | None, source: Source, validate: Validator, pan_key: pan.PanKey
) -> Admitted | DeadLetter:
    """Decode, strip card numbers and validate one transaction payload."""
    raw = raw or b""
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return dead_letter("invalid_json", raw, source, f"not valid JSON: {exc}")
    if not isinstance(event, dict):
        return dead_letter(
            "schema",
            raw,
            source,
            "transaction must be a JSON object",
            field="<record>",
            rule="type",
        )
    tokenized: list[str] = []
    if pan.may_contain_pan(raw):
        tokenized = pan.tokenize_fields(event, pan_key)
        # A card number left anywhere else (nested, or inside free text) cannot be tokenised
        # safely: the whole event goes to the dead-letter topic with the number masked.
        if _has_luhn_run(orjson.dumps(event).decode()):
            return dead_letter(
                "card_number",
                raw,
                source,
                "payload contains a card number outside a tokenisable field",
                rule="no_pan",
            )
    try:
        validate(event)
    except ValidationError as exc:
        return dead_letter("schema", raw, source, str(exc), field=exc.field, rule=exc.rule)
    return Admitted(event, source, tokenized)
