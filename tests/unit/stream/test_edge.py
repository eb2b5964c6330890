"""The edge: card numbers never pass, bad events become dead letters naming field and rule."""

from __future__ import annotations

import orjson
import pytest

from fraud.settings import Settings
from schemas import validator
from stream.edge import Admitted, DeadLetter, PanKey, Source, admit, pan, token_key_id
from tests.support.edge import KEY, PAN, VALID

SRC = Source("transactions", 3, 42)


def _admit(event) -> Admitted | DeadLetter:
    raw = event if isinstance(event, bytes) else orjson.dumps(event)
    return admit(raw, SRC, validator("transaction"), KEY)


@pytest.mark.parametrize(
    "number", ["4111111111111111", "5500005555555559", "378282246310005", "6011111111111117"]
)
def test_luhn_accepts_card_numbers(number):
    assert pan.is_pan(number)


@pytest.mark.parametrize(
    "number", ["4111111111111112", "123456789012", "41111111111111111111", "4111-1111"]
)
def test_luhn_rejects_other_digit_strings(number):
    assert not pan.is_pan(number)


def test_mask_keeps_first_six_and_last_four():
    assert pan.mask(PAN) == "411111******1111"
    assert (
        pan.mask_text(f"card {PAN} and order 1234567890123")
        == "card 411111******1111 and order 1234567890123"
    )


def test_valid_event_is_admitted_unchanged():
    result = _admit(VALID)
    assert isinstance(result, Admitted)
    assert result.event == VALID and result.tokenized_fields == []


def test_card_number_in_card_id_is_replaced_by_a_stable_keyed_token():
    first = _admit(dict(VALID, card_id=PAN))
    second = _admit(dict(VALID, card_id=PAN, transaction_id="tx-2"))
    assert isinstance(first, Admitted) and isinstance(second, Admitted)
    token = first.event["card_id"]
    assert token.startswith("tok_t1_") and PAN not in orjson.dumps(first.event).decode()
    assert second.event["card_id"] == token
    assert first.tokenized_fields == ["card_id"]
    assert (
        admit(
            orjson.dumps(dict(VALID, card_id=PAN)),
            SRC,
            validator("transaction"),
            PanKey("t1", b"other"),
        ).event["card_id"]
        != token
    )


def test_card_number_inside_free_text_is_tokenised_in_place():
    result = _admit(dict(VALID, note=f"customer read out {PAN} on the phone"))
    assert isinstance(result, Admitted) and result.tokenized_fields == ["note"]
    assert result.event["note"].startswith("customer read out tok_")
    assert result.event["note"].endswith(" on the phone")


def test_card_number_in_a_nested_field_is_dead_lettered_masked():
    result = _admit(dict(VALID, details={"note": f"customer read out {PAN} on the phone"}))
    assert isinstance(result, DeadLetter) and result.reason == "card_number"
    assert PAN not in orjson.dumps(result.record).decode()
    assert "411111******1111" in result.record["raw"]
    validator("dead_letter")(result.record)


def test_invalid_json_is_dead_lettered_with_source():
    result = _admit(b'{"transaction_id": "tx-1", ')
    assert isinstance(result, DeadLetter) and result.reason == "invalid_json"
    assert result.record["source"] == {"topic": "transactions", "partition": 3, "offset": 42}
    validator("dead_letter")(result.record)


def test_schema_violation_names_field_and_rule_and_masks_numbers():
    result = _admit(dict(VALID, amount=-3, device_id=PAN + "0"))  # not Luhn-valid: kept as is
    assert isinstance(result, DeadLetter) and result.reason == "schema"
    assert (result.record["field"], result.record["rule"]) == ("amount", "exclusiveMinimum")
    missing = _admit({k: v for k, v in VALID.items() if k != "amount"})
    assert (missing.record["field"], missing.record["rule"]) == ("amount", "required")
    not_object = _admit(b"[1, 2]")
    assert not_object.reason == "schema" and not_object.record["field"] == "<record>"


def test_empty_payload_is_dead_lettered():
    result = admit(None, SRC, validator("transaction"), KEY)
    assert isinstance(result, DeadLetter) and result.reason == "invalid_json"


def test_tokens_never_contain_a_digit_run_that_looks_like_a_card_number():
    tokens = [pan.tokenize(f"4{i:015d}", KEY) for i in range(20_000)]
    assert len(set(tokens)) == len(tokens)
    assert not any(pan.mask_text(token) != token for token in tokens)
    assert all(len(token) == len("tok_t1_") + 26 for token in tokens)


def test_a_token_names_its_key_so_the_key_can_be_rotated():
    old, new = PanKey("k1", b"old-key"), PanKey("k2", b"new-key")
    before, after = pan.tokenize(PAN, old), pan.tokenize(PAN, new)
    assert token_key_id(before) == "k1" and token_key_id(after) == "k2"
    assert before.removeprefix("tok_k1_") != after.removeprefix("tok_k2_")
    assert token_key_id("card-00001") is None and token_key_id("tok_abcdef") is None
    # The key never shows in a repr (logs, tracebacks).
    assert "old-key" not in repr(old) and "k1" in repr(old)


def test_the_key_comes_from_the_settings_with_its_id():
    key = PanKey.from_settings(Settings(pan_hash_key="x" * 32, pan_key_id="k7"))
    assert key == PanKey("k7", b"x" * 32)
    with pytest.raises(ValueError, match="pan_key_id"):
        Settings(pan_key_id="Key_7")  # ids stay short lower-case: tokens split on "_"


def test_the_fast_card_number_pattern_finds_what_the_plain_one_does():
    """`pan._CANDIDATE` opens each alternative on a digit and looks behind it (faster); over
    many random texts of digits, separators, letters and punctuation it matches exactly where
    the plainly written pattern does."""
    import random
    import re

    plain = re.compile(
        r"(?<![0-9])(?<![0-9][.,])[0-9]{13,19}(?![0-9])"
        r"|(?<![0-9A-Za-z])[0-9]{3,6}(?:[ .-][0-9]{3,6}){1,5}(?![0-9A-Za-z])"
    )
    rng = random.Random(13)
    alphabet = "0123456789" * 6 + ' .-,:aZ_"{}'
    texts = [PAN, f"x{PAN}", f"1.{PAN}", "4111 1111 1111 1111", "40.84442571827383"]
    texts += ["".join(rng.choices(alphabet, k=rng.randint(0, 60))) for _ in range(20_000)]
    for text in texts:
        expected = [(m.start(), m.end()) for m in plain.finditer(text)]
        assert [(m.start(), m.end()) for m in pan._CANDIDATE.finditer(text)] == expected, text


def test_the_scan_of_chains_finds_what_the_scan_of_the_whole_text_does():
    """`pan.ascii_contains_pan` (the pattern run only over chains of digits and separators long
    enough to hold a card number) agrees with `contains_pan` over card numbers written every way
    amid random digits, separators, letters and punctuation, and over random texts."""
    import random

    rng = random.Random(29)
    alphabet = "0123456789" * 6 + ' .-,:aZ_"{}'
    forms = [
        PAN,
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "3782.822463.10005",
        "4111111111111",
    ]
    texts = [PAN, f"x{PAN}x", f"1.{PAN}", f"1,{PAN}", f"9{PAN}", f"{PAN}0", "40.84442571827383"]
    for _ in range(20_000):
        text = "".join(rng.choices(alphabet, k=rng.randint(0, 60)))
        if rng.random() < 0.5:
            cut = rng.randint(0, len(text))
            text = text[:cut] + rng.choice(forms) + text[cut:]
        texts.append(text)
    found = 0
    for text in texts:
        expected = pan.contains_pan(text)
        assert pan.ascii_contains_pan(text.encode()) == expected, text
        found += expected
    assert 1_000 < found < len(texts) - 1_000  # both answers were put to the test
    assert not pan.ascii_contains_pan(orjson.dumps(VALID))
    assert pan.ascii_contains_pan(orjson.dumps({**VALID, "device_id": f"d-{PAN}"}))
