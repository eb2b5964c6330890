"""Samples the edge tests share: a test PAN key, a Luhn-valid card number and a valid
transaction."""

from __future__ import annotations

from typing import Any

from stream.edge import PanKey

KEY = PanKey("t1", b"test-key")
PAN = "4111111111111111"  # a well-known Luhn-valid test number
VALID: dict[str, Any] = {
    "transaction_id": "tx-1",
    "timestamp": "2026-03-01T08:15:00Z",
    "card_id": "card-00001",
    "customer_id": "cust-1",
    "terminal_id": "term-1",
    "merchant_category": "5411",
    "channel": "pos",
    "amount": 12.5,
    "currency": "EUR",
}
