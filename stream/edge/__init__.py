"""The trust boundary: raw Kafka bytes in, a clean transaction or a dead-letter record out.

    admitted = admit(raw, source, validator("transaction"), pan_key, limits)  # never raises

`limits` bounds every record's size, depth, fields and strings; `pan` finds card numbers on
decoded text and tokenises them (keyed hash) or masks them (first 6, last 4); `times` keeps a
single event from moving the stream's clock. Tokens name their key (`PanKey`: the key and its
id), so that the key can be rotated.
"""

from stream.edge import pan
from stream.edge.admission import (
    RAW_KEEP_BYTES,
    Admitted,
    DeadLetter,
    Source,
    admit,
    dead_letter,
    instant_us,
    readable_raw,
)
from stream.edge.limits import EdgeLimits, Shape, walk
from stream.edge.pan import (
    PanKey,
    contains_pan,
    is_pan,
    is_pan_integer,
    luhn_check_digit,
    luhn_valid,
    mask,
    mask_text,
    token_key_id,
    tokenize,
    tokenize_text,
)
from stream.edge.times import EventTimeGuard, Stamped

__all__ = [
    "RAW_KEEP_BYTES",
    "Admitted",
    "DeadLetter",
    "EdgeLimits",
    "EventTimeGuard",
    "PanKey",
    "Shape",
    "Source",
    "Stamped",
    "admit",
    "contains_pan",
    "dead_letter",
    "instant_us",
    "is_pan",
    "is_pan_integer",
    "luhn_check_digit",
    "luhn_valid",
    "mask",
    "mask_text",
    "pan",
    "readable_raw",
    "token_key_id",
    "tokenize",
    "tokenize_text",
    "walk",
]
