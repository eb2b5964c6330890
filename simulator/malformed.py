"""Malformed events for dead-letter testing, each made from a valid event.

Kinds (the dead-letter reason a consumer should give in brackets):
- invalid_json: the JSON text cut short, so it does not parse [invalid_json]
- missing_field: one required field removed [schema]
- bad_value: one field with a value the contract forbids [schema]
- card_number: card_id is a raw, Luhn-valid 16-digit card number instead of a token [card_number]

Malformed events get no ground-truth record: the scorer must route them to the dead-letter
topic, so they never get a decision to be judged against.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from schemas import load_schema
from stream.edge import luhn_check_digit

MALFORMED_KINDS = ("invalid_json", "missing_field", "bad_value", "card_number")
REQUIRED_FIELDS = tuple(load_schema("transaction")["required"])
# (field, forbidden value): each breaks exactly one rule of schemas/v1/transaction.json.
BAD_VALUES: tuple[tuple[str, Any], ...] = (
    ("amount", -12.5),
    ("amount", 0),
    ("amount", "12.50"),
    ("channel", "teleport"),
    ("timestamp", "yesterday at noon"),
    ("merchant_category", "54"),
    ("currency", "euro"),
    ("country", "France"),
)


def card_number(rng: np.random.Generator) -> str:
    """A random Luhn-valid 16-digit number with a Visa-like prefix (never a real card's)."""
    body = "4" + "".join(str(d) for d in rng.integers(0, 10, 14))
    return body + luhn_check_digit(body)


def malform(event: dict[str, Any], kind: str, rng: np.random.Generator) -> tuple[str, bytes]:
    """(key, value bytes) of a malformed version of `event`."""
    key = str(event["card_id"])
    if kind == "invalid_json":
        text = orjson.dumps(event)
        return key, text[: int(rng.integers(10, len(text) - 1))]
    broken = dict(event)
    if kind == "missing_field":
        del broken[REQUIRED_FIELDS[int(rng.integers(0, len(REQUIRED_FIELDS)))]]
    elif kind == "bad_value":
        field, value = BAD_VALUES[int(rng.integers(0, len(BAD_VALUES)))]
        broken[field] = value
    elif kind == "card_number":
        # An upstream system that forgot to tokenise sends the number as key and card_id.
        key = broken["card_id"] = card_number(rng)
    else:
        raise ValueError(f"unknown malformed kind {kind!r}; known: {', '.join(MALFORMED_KINDS)}")
    return key, orjson.dumps(broken)
