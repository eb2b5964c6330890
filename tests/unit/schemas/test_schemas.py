"""Data contracts: valid events pass, invalid ones fail naming field and rule, v1 stays compatible."""

from __future__ import annotations

import copy
import json

import fastjsonschema
import pytest

from fraud.errors import ValidationError
from schemas import KINDS, load_schema, validate, validator

TX = {
    "transaction_id": "tx-000001",
    "timestamp": "2026-03-01T08:15:00Z",
    "card_id": "card_8f3a91",
    "customer_id": "cust-0001",
    "terminal_id": "term-0042",
    "merchant_category": "5411",
    "channel": "pos",
    "amount": 42.10,
    "currency": "EUR",
}


def test_every_kind_has_a_loadable_schema():
    for kind in KINDS:
        assert load_schema(kind)["$id"].endswith(f"/v1/{kind}.json")


def test_minimal_and_full_transactions_validate():
    assert validate("transaction", TX) == TX
    full = dict(
        TX,
        terminal_lat=48.85,
        terminal_lon=2.35,
        customer_lat=48.8,
        customer_lon=2.3,
        device_id="dev-1",
        country="FR",
    )
    assert validate("transaction", full) == full


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        ({"amount": 0}, "amount", "exclusiveMinimum"),
        ({"amount": "12"}, "amount", "type"),
        ({"channel": "phone"}, "channel", "enum"),
        ({"timestamp": "2026-03-01 08:15"}, "timestamp", "pattern"),
        ({"timestamp": "2026-03-01T08:15:00+02:00"}, "timestamp", "pattern"),
        ({"card_id": "4111111111111111"}, "card_id", "pattern"),
        ({"merchant_category": "54"}, "merchant_category", "pattern"),
        ({"country": "France"}, "country", "pattern"),
    ],
)
def test_invalid_transaction_names_field_and_rule(change, field, rule):
    with pytest.raises(ValidationError) as info:
        validate("transaction", dict(TX, **change))
    assert (info.value.field, info.value.rule) == (field, rule)
    assert field in str(info.value) and rule in str(info.value)


def test_missing_required_field_is_named():
    event = {k: v for k, v in TX.items() if k != "terminal_id"}
    with pytest.raises(ValidationError) as info:
        validate("transaction", event)
    assert (info.value.field, info.value.rule) == ("terminal_id", "required")


def test_history_row_is_a_transaction_plus_label():
    assert validate("history_row", dict(TX, is_fraud=1, fraud_scenario="card_testing"))
    with pytest.raises(ValidationError) as info:
        validate("history_row", TX)
    assert info.value.field == "is_fraud"
    with pytest.raises(ValidationError) as info:
        validate("history_row", dict(TX, amount=-5, is_fraud=0))
    assert info.value.field == "amount"


def test_feedback_and_dead_letter_contracts():
    assert validate(
        "feedback",
        {
            "transaction_id": "tx-1",
            "label": "fraud",
            "analyst_id": "a7",
            "labelled_at": "2026-03-02T09:00:00Z",
            "source": "analyst",
        },
    )
    with pytest.raises(ValidationError) as info:
        validate(
            "feedback",
            {
                "transaction_id": "tx-1",
                "label": "maybe",
                "analyst_id": "a7",
                "labelled_at": "2026-03-02T09:00:00Z",
                "source": "analyst",
            },
        )
    assert info.value.field == "label"
    assert validate(
        "dead_letter",
        {
            "reason": "schema",
            "raw": "{}",
            "received_at": "2026-03-02T09:00:00Z",
            "source": {"topic": "transactions", "partition": 0, "offset": 7},
        },
    )


def test_a_v2_producer_adding_an_optional_field_does_not_break_v1_consumers():
    v2 = copy.deepcopy(load_schema("transaction"))
    v2["$id"] = v2["$id"].replace("/v1/", "/v2/")
    v2["properties"]["wallet_type"] = {"type": "string", "enum": ["apple_pay", "google_pay"]}
    event_v2 = dict(TX, wallet_type="apple_pay")
    assert fastjsonschema.compile(v2)(event_v2) == event_v2  # what a v2 producer checks
    assert validator("transaction", "v1")(event_v2) == event_v2  # what a v1 consumer accepts
    # and v1 events remain valid for v2 consumers
    assert fastjsonschema.compile(v2)(json.loads(json.dumps(TX))) == TX


def test_validators_are_compiled_once():
    assert validator("transaction") is validator("transaction")
