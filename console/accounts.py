"""Analysts who may log in: password hashes (scrypt, from the standard library) kept in a file
or the environment, never the passwords themselves.

    line = analyst_line("a.smith", "correct horse")   # "a.smith:scrypt$16384$8$1$<salt>$<key>"
    analysts = parse_analysts(text)                     # {"a.smith": "scrypt$..."}
    verify_password("correct horse", analysts["a.smith"])   # True

A file holds one `analyst_id:hash` per line (`#` starts a comment); the environment variable
FRAUD_CONSOLE_ANALYSTS holds the same entries separated by commas or new lines. Analyst ids
follow the feedback contract (`check_analyst_id`), so every id that can log in can label.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from fraud.errors import ConfigError, ValidationError
from fraud.settings import Settings
from stream.feedback import CHARGEBACK_ANALYST, check_analyst_id

SCHEME = "scrypt"
# 16 MiB and about 50 ms per hash: slow for a guesser, quick enough for a login.
COST, BLOCK_SIZE, PARALLELISM, KEY_BYTES = 2**14, 8, 1, 32
MIN_PASSWORD = 8


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$salt$key`: everything needed to check the password later."""
    salt = salt or os.urandom(16)
    key = hashlib.scrypt(
        password.encode(), salt=salt, n=COST, r=BLOCK_SIZE, p=PARALLELISM, dklen=KEY_BYTES
    )
    return f"{SCHEME}${COST}${BLOCK_SIZE}${PARALLELISM}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches `stored` (a `hash_password` result); False for a malformed
    hash. The comparison takes the same time wherever the keys differ."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != SCHEME:
            return False
        expected = _unb64(key)
        if len(expected) != KEY_BYTES:
            return False
        actual = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=2**26,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# Checked against when the analyst id is unknown, so that a wrong id costs as long as a wrong
# password and the answer's timing does not tell which ids exist.
_UNKNOWN = hash_password(secrets.token_urlsafe(16))


def check_login(analysts: Mapping[str, str], analyst_id: str, password: str) -> bool:
    stored = analysts.get(analyst_id)
    matches = verify_password(password, stored or _UNKNOWN)
    return stored is not None and matches


def check_new_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ValidationError(
            f"a password needs at least {MIN_PASSWORD} characters", "password", "min_length"
        )
    return password


def analyst_line(analyst_id: str, password: str) -> str:
    """One entry of an analysts file (or of FRAUD_CONSOLE_ANALYSTS) for a new password."""
    _check_id(analyst_id)
    return f"{analyst_id}:{hash_password(check_new_password(password))}"


def _check_id(analyst_id: str) -> str:
    check_analyst_id(analyst_id)
    if analyst_id == CHARGEBACK_ANALYST:
        raise ValidationError(
            f"analyst id {CHARGEBACK_ANALYST!r} is reserved for chargebacks", "analyst_id"
        )
    return analyst_id


def parse_analysts(text: str, source: str) -> dict[str, str]:
    """`analyst_id:hash` entries (lines or comma-separated; `#` comments) -> {id: hash}.

    ConfigError names `source` and the entry when one is malformed."""
    found: dict[str, str] = {}
    for number, raw in enumerate(text.replace(",", "\n").splitlines(), start=1):
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        analyst_id, sep, stored = entry.partition(":")
        if not sep or not stored.startswith(f"{SCHEME}$") or stored.count("$") != 5:
            raise ConfigError(
                f"{source}, entry {number}: expected analyst_id:scrypt$... "
                "(make one with `fraud console add-analyst ID --print`)"
            )
        try:
            found[_check_id(analyst_id.strip())] = stored.strip()
        except ValidationError as exc:
            raise ConfigError(f"{source}, entry {number}: {exc}") from None
    return found


def load_analysts(settings: Settings) -> dict[str, str]:
    """The analysts file (when it exists) with FRAUD_CONSOLE_ANALYSTS on top. Read at every
    login, so an analyst added to the file can log in without a restart."""
    path = settings.console_analysts_file
    analysts: dict[str, str] = {}
    if path.is_file():
        analysts.update(parse_analysts(path.read_text(encoding="utf-8"), str(path)))
    inline = settings.console.analysts
    if inline is not None:
        analysts.update(parse_analysts(inline.get_secret_value(), "FRAUD_CONSOLE_ANALYSTS"))
    return analysts


def save_analyst(path: Path, line: str) -> bool:
    """Add or replace the entry of `line`'s analyst in the file at `path` (created readable by
    its owner only); True when an entry was replaced."""
    analyst_id = line.split(":", 1)[0]
    kept, replaced = [], False
    if path.is_file():
        for existing in path.read_text(encoding="utf-8").splitlines():
            if existing.split("#", 1)[0].strip().split(":", 1)[0] == analyst_id:
                replaced = True
                continue
            kept.append(existing)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join([*kept, line]) + "\n")
    return replaced
