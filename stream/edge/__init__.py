"""The trust boundary: raw Kafka bytes in, a clean transaction or a dead-letter record out.

    admitted = admit(raw, source, validator("transaction"), pan_key)   # Admitted | DeadLetter

Card numbers never pass it: `pan` tokenises them (keyed hash, `PanKey`: the key and its id) or
masks them (first 6, last 4).
"""

from stream.edge import pan
from stream.edge.admission import Admitted, DeadLetter, Source, admit, dead_letter
from stream.edge.pan import (
    PanKey,
    is_pan,
    luhn_check_digit,
    luhn_valid,
    mask,
    mask_text,
    token_key_id,
    tokenize,
)

__all__ = [
    "Admitted",
    "DeadLetter",
    "PanKey",
    "Source",
    "admit",
    "dead_letter",
    "is_pan",
    "luhn_check_digit",
    "luhn_valid",
    "mask",
    "mask_text",
    "pan",
    "token_key_id",
    "tokenize",
]
