"""Secrets: the public development defaults, and masking secrets out of text.

    mask_url("rediss://scorer:s3cret@host:6380/0")   # 'rediss://scorer:***@host:6380/0'
    mask_secrets("failed: s3cret", ["s3cret"])       # 'failed: ***'

Development runs without configuring a secret: the PAN hashing key and the model signing key
fall back to the values below, which are public (they are in this file), so anyone can recompute
tokens and sign models with them. `fraud.settings` refuses them when FRAUD_ENV=production.
Nothing here reads the environment or the disk.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

# The PAN hashing key every development deployment shares (FRAUD_PAN_HASH_KEY).
DEV_PAN_HASH_KEY = "change-me-in-production"
# Ed25519 model signing key of development (FRAUD_MODEL_SIGNING_KEY, base64 of the 32-byte
# seed) and its public key (what FRAUD_MODEL_TRUSTED_KEYS falls back to). The seed is the
# SHA-256 of "fraud-scorer development model signing key (public, never for production)";
# tests/unit/fraud/test_secrets.py recomputes both.
DEV_MODEL_SIGNING_KEY = "xwRmh04CISD94FnyKEREdWY0tkGSM8fDevGWkUMk0m0="
DEV_MODEL_PUBLIC_KEY = "ywCOWfKgmqL8WXAS2ItD0mwIzQtTtrMHqGVSmw4M+N0="

MASK = "***"
# Query parameters that carry a secret in a connection URL (password=..., token=...).
_SECRET_QUERY = re.compile(r"(?i)\b(password|passwd|pwd|secret|token|key)=([^&#]*)")


def mask_url(url: str) -> str:
    """The URL with the password of its user part and secret-looking query values masked;
    text that is not a URL comes back unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    masked = url
    if parts.password:
        userinfo = parts.netloc.rpartition("@")[0]
        user = userinfo.partition(":")[0]
        masked = masked.replace(f"{userinfo}@", f"{user}:{MASK}@", 1)
    if parts.query:
        query = _SECRET_QUERY.sub(lambda m: f"{m.group(1)}={MASK}", parts.query)
        masked = masked.replace(f"?{parts.query}", f"?{query}", 1)
    return masked


def mask_secrets(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every occurrence of each (non-empty) secret replaced by the mask."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text
