"""Reason codes in plain words: every feature of the definition has words, a unit and, where it
has one, a baseline; the words come from the feature metadata."""

from __future__ import annotations

import math

import pytest

from console.explain import describe, plain_reasons
from stream.features import FEATURE_NAMES, feature_info

INFOS = feature_info()
# One plausible value per unit, and a vector that carries every feature.
SAMPLE = {
    "money": 312.5,
    "count": 7.0,
    "ratio": 6.24,
    "share": 0.0123,
    "km": 1234.0,
    "kmh": 880.0,
    "duration": 150.0,
    "hour": 3.0,
    "label": 1.0,
}
VECTOR = {name: SAMPLE[INFOS[name].unit] for name in FEATURE_NAMES}


@pytest.mark.parametrize("name", FEATURE_NAMES)
def test_every_feature_reads_as_words_with_its_value(name: str) -> None:
    info = INFOS[name]
    text = describe(name, VECTOR[name], VECTOR, INFOS)
    assert "_" not in text and "{" not in text  # words, not identifiers or template slots
    assert text[0].islower() or text[0].isdigit()
    if info.unit == "label":
        assert info.labels[1] in text
    else:
        assert text != describe(name, VECTOR[name] * 3 + 1, VECTOR, INFOS), "value not shown"
    if info.baseline is not None:
        assert "; " in text, f"{name}: the baseline is missing"
        assert info.baseline.feature in FEATURE_NAMES


@pytest.mark.parametrize("name", FEATURE_NAMES)
def test_a_missing_value_is_said_not_hidden(name: str) -> None:
    for missing in (None, math.nan):
        text = describe(name, missing, {}, INFOS)
        assert text and "_" not in text and "{" not in text and "nan" not in text


def test_the_words_and_numbers_an_analyst_reads() -> None:
    features = {
        "card_count_1h": 7.0,
        "card_count_30d": 288.0,  # 0.4 an hour over 720 hours
        "amount": 312.5,
        "card_amount_mean_30d": 45.2,
        "card_amount_sum_24h": 1240.0,
        "card_amount_sum_30d": 3000.0,
        "terminal_fraud_rate_28d_after_delay": 0.0123,
        "channel_code": 2.0,
        "merchant_category_group_code": 18.0,
        "seconds_since_prev_tx": 150.0,
        "speed_from_prev_tx_kmh": 880.0,
        "amount_to_card_mean_30d": 6.9,
        "card_new_device_30d": 1.0,
    }
    said = {name: describe(name, value, features, INFOS) for name, value in features.items()}
    assert said["card_count_1h"] == (
        "7 transactions on this card in the last hour; this card averages 0.4 an hour"
    )
    assert said["amount"] == "amount 312.50; this card averages 45.20 in the last 30 days"
    assert said["card_amount_sum_24h"] == (
        "1,240.00 spent on this card in the last 24 hours; this card averages 100.00 per 24 hours"
    )
    assert said["terminal_fraud_rate_28d_after_delay"] == (
        "1.2% of this terminal's transactions in the 28 days that ended 7 days ago confirmed fraud"
    )
    assert said["channel_code"] == "channel: online (ecom)"
    assert said["merchant_category_group_code"] == "merchant group: jewelry"
    assert said["seconds_since_prev_tx"] == "2.5 minutes since this card's previous transaction"
    assert said["speed_from_prev_tx_kmh"] == (
        "travelling at 880 km/h since this card's previous transaction"
    )
    assert (
        said["amount_to_card_mean_30d"]
        == "amount 6.9 times this card's average in the last 30 days"
    )
    assert said["card_new_device_30d"] == "a device this card had not used in the last 30 days"
    assert describe("seconds_since_prev_tx", None, {}, INFOS) == (
        "no earlier transaction on this card in the last 30 days"
    )


def test_the_label_delay_of_the_model_is_in_the_words() -> None:
    infos = feature_info(label_delay_days=3)
    text = describe("terminal_count_7d_after_delay", 40.0, {}, infos)
    assert text == "40 transactions at this terminal in the 7 days that ended 3 days ago"


def test_reason_codes_keep_their_order_value_and_contribution() -> None:
    codes = [
        {"feature": "card_count_1h", "value": 7.0, "contribution": 1.25},
        {"feature": "amount", "value": 312.5, "contribution": 0.5},
        {"feature": "feature_of_a_newer_model", "value": 2.0, "contribution": 0.1},
    ]
    reasons = plain_reasons(codes, {"card_count_30d": 288.0}, INFOS)
    assert [r.feature for r in reasons] == [c["feature"] for c in codes]
    assert [r.contribution for r in reasons] == [1.25, 0.5, 0.1]
    assert reasons[0].text.startswith("7 transactions on this card in the last hour; ")
    assert reasons[1].text == "amount 312.50"  # no baseline in the vector: none invented
    assert reasons[2].text == "feature_of_a_newer_model = 2"
