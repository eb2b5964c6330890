"""Card numbers (PAN) never pass the edge.

A card number is 13-19 digits passing the Luhn check, written as one run ("4111111111111111")
or in groups of 3-6 digits joined by single spaces, dashes or dots ("4111 1111 1111 1111",
"3782 822463 10005"); a JSON integer of 13-19 digits counts too. The digits of a non-integer
number never do: the fraction of a coordinate written at full double precision is not a card
number. Detection runs on decoded text (after JSON unescaping, other scripts' digits folded to
0-9), so an escaped digit hides nothing.

In a top-level field every card number is replaced by a keyed-hash token before anything else
sees the event (an identifier that happens to hold one keeps its shape: "dev-<token>");
anywhere else (nested, in a field name) the event goes to the dead-letter topic with the number
masked to its first 6 and last 4 digits. The key lives in the settings (`FRAUD_PAN_HASH_KEY`),
so tokens are stable per deployment but cannot be reversed or recomputed without it. Each token
names its key (`tok_<key id>_<hash>`, FRAUD_PAN_KEY_ID), so that after a rotation the tokens of
the old key are told apart from the new ones (SECURITY.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass

from fraud.settings import Settings

# One run of 13-19 digits, never the fraction of a number written as text ("40.84442571827383":
# no match right after "<digit>." or "<digit>,"); or groups of 3-6 digits joined by one
# separator, standing on their own (no letter or digit glued to either end, so the digit groups
# of a hex identifier like "dev-eb72-7482-8288-674f" are not read as one). Written as
#   (?<![0-9])(?<![0-9][.,])[0-9]{13,19}(?![0-9])
#   | (?<![0-9A-Za-z])[0-9]{3,6}(?:[ .-][0-9]{3,6}){1,5}(?![0-9A-Za-z])
# but with each alternative opening on its first digit and looking behind that digit: a pattern
# that starts with a character class lets the regex engine skip ahead to the next digit, about
# 3x faster over a transaction (tests/unit/stream/test_edge.py checks both forms agree).
_CANDIDATE = re.compile(
    r"[0-9](?<![0-9][0-9])(?<![0-9][.,][0-9])[0-9]{12,18}(?![0-9])"
    r"|[0-9](?<![0-9A-Za-z][0-9])[0-9]{2,5}(?:[ .-][0-9]{3,6}){1,5}(?![0-9A-Za-z])"
)
_SEPARATOR_CHARS = " .-"  # what may stand between the digit groups of a card number
_SEPARATORS = str.maketrans("", "", _SEPARATOR_CHARS)
_SEPARATOR_BYTES = _SEPARATOR_CHARS.encode()
TOKEN_PREFIX = "tok_"
MIN_DIGITS, MAX_DIGITS = 13, 19
# For `ascii_contains_pan`: what a candidate can be made of (digits and the separators) read as
# "0", every other byte as "x"; a candidate of MIN_DIGITS digits spans at least as many bytes.
_CHAIN_BYTES = bytes(48 if chr(b) in "0123456789" + _SEPARATOR_CHARS else 120 for b in range(256))
_MIN_CHAIN = b"0" * MIN_DIGITS


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


def _pan_digits(candidate: str) -> str | None:
    """The digits of `candidate` when they form a card number, else None."""
    digits = candidate.translate(_SEPARATORS)
    if MIN_DIGITS <= len(digits) <= MAX_DIGITS and digits.isdigit() and luhn_valid(digits):
        return digits
    return None


def is_pan(value: str) -> bool:
    """The whole of `value` is a card number (one run, or grouped with separators)."""
    value = ascii_digits(value)
    return _CANDIDATE.fullmatch(value) is not None and _pan_digits(value) is not None


def is_pan_integer(value: int) -> bool:
    """A JSON integer that is a card number (13-19 digits passing Luhn)."""
    return MIN_DIGITS <= len(str(abs(value))) <= MAX_DIGITS and luhn_valid(str(abs(value)))


def ascii_digits(text: str) -> str:
    """`text` with other scripts' digits (fullwidth, Arabic-Indic, ...) folded to 0-9, so
    that no way of writing a digit hides a card number from the checks."""
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


def ascii_contains_pan(data: bytes) -> bool:
    """`contains_pan` of the ASCII text `data`, scanning only where a card number could be.

    A candidate is made of digits and separators only, so it lies inside a chain of such bytes;
    one holding a card number spans MIN_DIGITS bytes or more. Such chains are found with
    `bytes.translate` and `find` (C speed); only they, and the bytes around them the pattern
    looks at, go through the pattern: a transaction's timestamp, amount and coordinates at four
    or five decimals are chains too short. The pattern's matches inside a chain are the ones a
    scan of the whole text finds there, since no match reaches past a chain. About 2.5x cheaper
    than `contains_pan` over a benchmark transaction (its id holds one long chain), 15x over one
    without such a chain."""
    chains = data.translate(_CHAIN_BYTES)
    start = chains.find(_MIN_CHAIN)  # where a long chain begins: searches resume past chains
    text = None
    while start >= 0:
        end = chains.find(b"x", start)
        end = len(chains) if end < 0 else end
        if len(data[start:end].translate(None, _SEPARATOR_BYTES)) >= MIN_DIGITS:
            text = data.decode("ascii") if text is None else text
            # One byte past the chain: what the pattern's look-ahead needs (its look-behinds
            # see before `start` anyway).
            if any(_pan_digits(m.group()) for m in _CANDIDATE.finditer(text, start, end + 1)):
                return True
        start = chains.find(_MIN_CHAIN, end)
    return False


def contains_pan(text: str) -> bool:
    """Some part of `text` is a card number."""
    if len(text) < MIN_DIGITS:
        return False
    return any(_pan_digits(m.group()) for m in _CANDIDATE.finditer(ascii_digits(text)))


def mask(pan: str) -> str:
    """First 6 and last 4 digits only: 4111111111111111 -> 411111******1111."""
    digits = pan.translate(_SEPARATORS)
    return f"{digits[:6]}{'*' * (len(digits) - 10)}{digits[-4:]}"


def mask_text(text: str) -> str:
    """Every card number in free text (raw payloads, error messages) masked to 6 + 4 digits."""
    if len(text) < MIN_DIGITS:
        return text
    text = ascii_digits(text)
    return _CANDIDATE.sub(lambda m: mask(m.group()) if _pan_digits(m.group()) else m.group(), text)


def tokenize_text(text: str, key: PanKey) -> str:
    """`text` with every card number in it replaced by its token."""
    text = ascii_digits(text)
    return _CANDIDATE.sub(
        lambda m: tokenize(m.group(), key) if _pan_digits(m.group()) else m.group(), text
    )


def tokenize(pan: str, key: PanKey) -> str:
    """`tok_<key id>_<26 base32 letters>`: the keyed hash of the card's digits.

    Lower-case base32 (letters and 2-7): unlike hex, a token practically never contains a
    13-digit run, so a token can never itself look like a card number to a scanner."""
    digits = ascii_digits(pan).translate(_SEPARATORS)
    digest = hmac.new(key.secret, digits.encode(), hashlib.sha256).digest()
    return f"{TOKEN_PREFIX}{key.key_id}_{base64.b32encode(digest).decode()[:26].lower()}"


def token_key_id(token: str) -> str | None:
    """The key id a token names, or None for anything else (tokens from before key ids)."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    key_id, sep, _ = token[len(TOKEN_PREFIX) :].partition("_")
    return key_id if sep else None
