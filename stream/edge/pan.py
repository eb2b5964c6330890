"""Card numbers (PAN) never pass the edge.

A field that looks like a card number — a 13-19 digit string that passes the Luhn check — is
replaced by a keyed-hash token before anything else sees the event; in raw payloads kept for the
dead-letter topic it is masked to its first 6 and last 4 digits. The key lives in the settings
(`FRAUD_PAN_HASH_KEY`), so tokens are stable per deployment but cannot be reversed or recomputed
without it. Each token names its key (`tok_<key id>_<hash>`, FRAUD_PAN_KEY_ID), so that after a
rotation the tokens of the old key are told apart from the new ones (SECURITY.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

from fraud.settings import Settings

_DIGIT_RUN = re.compile(r"(?<![0-9])[0-9]{13,19}(?![0-9])")
_DIGIT_RUN_BYTES = re.compile(rb"(?<![0-9])[0-9]{13,19}(?![0-9])")
TOKEN_PREFIX = "tok_"


@dataclass(frozen=True)
class PanKey:
    """The PAN hashing key and the id its tokens carry."""

    key_id: str
    secret: bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> PanKey:
        """The configured key (refused in production while it is the public default)."""
        return cls(settings.pan_key_id, settings.pan_secret())

    def __repr__(self) -> str:  # never the key itself
        return f"PanKey(key_id={self.key_id!r})"


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) checksum every card number satisfies."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def luhn_check_digit(digits: str) -> str:
    """The digit that makes `digits + check` pass the Luhn test (to make test card numbers)."""
    return next(d for d in "0123456789" if luhn_valid(digits + d))


def is_pan(value: str) -> bool:
    return 13 <= len(value) <= 19 and value.isdigit() and luhn_valid(value)


def mask(pan: str) -> str:
    """First 6 and last 4 digits only: 4111111111111111 -> 411111******1111."""
    return f"{pan[:6]}{'*' * (len(pan) - 10)}{pan[-4:]}"


def tokenize(pan: str, key: PanKey) -> str:
    # Lower-case base32 (letters and 2-7): unlike hex, a token practically never contains a
    # 13-digit run, so a token can never itself look like a card number to a scanner.
    digest = hmac.new(key.secret, pan.encode(), hashlib.sha256).digest()
    return f"{TOKEN_PREFIX}{key.key_id}_{base64.b32encode(digest).decode()[:26].lower()}"


def token_key_id(token: str) -> str | None:
    """The key id a token names, or None for anything else (tokens from before key ids)."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    key_id, sep, _ = token[len(TOKEN_PREFIX) :].partition("_")
    return key_id if sep else None


def may_contain_pan(raw: bytes) -> bool:
    """Cheap pre-check on the wire bytes; only events that pass it are inspected field by field."""
    return _DIGIT_RUN_BYTES.search(raw) is not None


def mask_text(text: str) -> str:
    """Mask every Luhn-valid 13-19 digit run in free text (raw payloads, error messages)."""
    return _DIGIT_RUN.sub(lambda m: mask(m.group()) if luhn_valid(m.group()) else m.group(), text)


def tokenize_fields(event: dict[str, Any], key: PanKey) -> list[str]:
    """Replace every top-level string field holding a card number by its token, in place.

    Returns the names of the fields that were replaced (for metrics; never the values).
    """
    replaced = []
    for name, value in event.items():
        if isinstance(value, str) and is_pan(value):
            event[name] = tokenize(value, key)
            replaced.append(name)
        elif isinstance(value, int) and not isinstance(value, bool) and is_pan(str(value)):
            event[name] = tokenize(str(value), key)
            replaced.append(name)
    return replaced
