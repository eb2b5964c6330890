"""PSI and the drift reference: hand-computed values, training's reference format, the live window."""

from __future__ import annotations

import json
import math
import random

import pytest

from fraud.errors import ValidationError
from stream.monitoring.drift import (
    PSI_ALERT_THRESHOLD,
    Binning,
    DriftWindow,
    parse_reference,
    psi,
)

SCORE_EDGES = [0.0, 0.01, 0.05, 0.2, 1.0]


def reference_document() -> dict:
    """A reference as `training.evaluation.reference.reference_distribution` writes it."""
    return {
        "edges_from": "validation",
        "score": {
            "bin_edges": SCORE_EDGES,
            "validation": [0.7, 0.2, 0.08, 0.02],
            "test": [0.6, 0.25, 0.1, 0.05],
        },
        "features": {
            "amount": {
                "kind": "numeric",
                "bin_edges": [1.0, 20.0, 80.0, 5000.0],
                "validation": [0.5, 0.3, 0.2],
                "test": [0.4, 0.4, 0.2],
                "missing_share": {"validation": 0.1, "test": 0.0},
            },
            "channel": {
                "kind": "categorical",
                "validation": {"1": 0.75, "2": 0.25},
                "test": {"1": 0.5, "2": 0.5},
                "missing_share": {"validation": 0.0, "test": 0.0},
            },
        },
    }


def test_psi_of_identical_distributions_is_zero():
    assert psi([0.25, 0.25, 0.5], [25, 25, 50]) == pytest.approx(0.0)


def test_psi_matches_the_formula_by_hand():
    # (0.8 - 0.5) ln(0.8 / 0.5) + (0.2 - 0.5) ln(0.2 / 0.5)
    by_hand = 0.3 * math.log(1.6) + (-0.3) * math.log(0.4)
    assert psi([0.5, 0.5], [80, 20]) == pytest.approx(by_hand)
    assert by_hand == pytest.approx(0.415888, abs=1e-6)


def test_empty_bins_are_floored_instead_of_infinite():
    # Expected 0 in bin 2 is floored at 1e-4.
    by_hand = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert psi([1.0, 0.0], [50, 50]) == pytest.approx(by_hand)


def test_psi_rejects_mismatched_or_empty_input():
    with pytest.raises(ValueError, match="bins"):
        psi([0.5, 0.5], [1, 2, 3])
    with pytest.raises(ValueError, match="at least one"):
        psi([0.5, 0.5], [0, 0])


def test_reference_period_becomes_bins_with_a_missing_share():
    reference = parse_reference(reference_document())
    assert reference.period == "validation"
    score, amount, channel = reference.variables()
    assert score.edges == (0.01, 0.05, 0.2)
    assert score.expected == pytest.approx((0.7, 0.2, 0.08, 0.02, 0.0))
    # Shares of present values are rescaled by the 10% missing.
    assert amount.edges == (20.0, 80.0)
    assert amount.expected == pytest.approx((0.45, 0.27, 0.18, 0.1))
    # One bin per code, one for codes training never saw, one for missing.
    assert channel.categories == ("1", "2")
    assert channel.expected == pytest.approx((0.75, 0.25, 0.0, 0.0))
    test_period = parse_reference(reference_document(), period="test")
    assert test_period.score.expected == pytest.approx((0.6, 0.25, 0.1, 0.05, 0.0))


def test_values_fall_in_bins_as_training_counted_them():
    reference = parse_reference(reference_document())
    score, amount, channel = reference.variables()
    # Below the first edge and above the last count in the end bins; an edge opens its bin.
    assert [score.bin_of(v) for v in (-0.5, 0.0, 0.01, 0.049, 0.2, 1.0, 7.0)] == [
        0, 0, 1, 1, 3, 3, 3,
    ]  # fmt: skip
    assert [amount.bin_of(v) for v in (None, float("nan"), "n/a", "25")] == [3, 3, 3, 1]
    # Decisions log codes as numbers; the reference keys them as text.
    assert [channel.bin_of(v) for v in (1.0, 2, "2", 3.0, None)] == [0, 1, 1, 2, 3]


def test_reference_written_by_training_parses():
    """Contract with the training side: its writer's output is what this reader accepts."""
    pd = pytest.importorskip("pandas")
    reference_module = pytest.importorskip(
        "training.evaluation.reference", reason="training.evaluation.reference not importable"
    )
    rng = random.Random(3)
    n = 500
    frame = pd.DataFrame(
        {
            "amount": [rng.lognormvariate(3, 1) if i % 10 else None for i in range(n)],
            "channel": [rng.choice([1, 2, 3]) for _ in range(n)],
        }
    )
    scores = [rng.betavariate(1, 30) for _ in range(n)]
    document = reference_module.reference_distribution(
        {"validation": (scores, frame), "test": (scores, frame)}, ["amount", "channel"], ["channel"]
    )
    reference = parse_reference(json.loads(json.dumps(document)))
    assert [v.name for v in reference.variables()] == ["score", "amount", "channel"]
    for variable in reference.variables():
        assert sum(variable.expected) == pytest.approx(1.0, abs=1e-4)
    # The live window over the very same rows shows no drift.
    window = DriftWindow(reference, size=n)
    for score, amount, channel in zip(scores, frame["amount"], frame["channel"], strict=True):
        window.add(score, {"amount": amount, "channel": float(channel)})
    assert max(window.psi().values()) < 0.01


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("score", "validation"), [0.5, 0.6, 0.0, 0.0], "score.validation"),
        (("score", "validation"), [0.5, 0.5], "score.validation"),
        (("score", "bin_edges"), [0.0, 0.5, 0.4, 0.6, 1.0], "score.bin_edges"),
        (("features", "amount", "kind"), "ordinal", "features.amount.kind"),
        (("features", "amount", "missing_share"), {"validation": 1.5}, "features.amount.missing_share.validation"),
        (("features", "channel", "validation"), [0.5, 0.5], "features.channel.validation"),
        (("features", "score"), {"kind": "numeric"}, "features.score"),
    ],
)  # fmt: skip
def test_a_bad_reference_names_the_field(path, value, field):
    document = reference_document()
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValidationError) as caught:
        parse_reference(document)
    assert caught.value.field == field
    assert field in str(caught.value)


def test_an_unknown_period_lists_the_ones_there_are():
    with pytest.raises(ValidationError, match=r"periods \['test', 'validation'\]"):
        parse_reference(reference_document(), period="train")


def _window_reference():
    return parse_reference(
        {
            "edges_from": "validation",
            "score": {"bin_edges": [0.0, 0.5, 1.0], "validation": [0.5, 0.5]},
            "features": {},
        }
    )


def test_window_from_the_reference_distribution_is_stable():
    rng = random.Random(7)
    window = DriftWindow(parse_reference(reference_document()), size=4000)
    for _ in range(4000):
        score = rng.choices([0.001, 0.02, 0.1, 0.5], weights=[0.7, 0.2, 0.08, 0.02])[0]
        amount = None if rng.random() < 0.1 else rng.choices([10, 50, 100], [0.5, 0.3, 0.2])[0]
        window.add(score, {"amount": amount, "channel": rng.choices([1.0, 2.0], [3, 1])[0]})
    values = window.psi()
    assert set(values) == {"score", "amount", "channel"}
    assert max(values.values()) < 0.01


def test_window_flags_a_shifted_score_and_a_feature_gone_missing():
    rng = random.Random(7)
    window = DriftWindow(parse_reference(reference_document()), size=2000)
    for _ in range(2000):
        score = rng.choices([0.001, 0.02, 0.1, 0.5], weights=[0.4, 0.3, 0.2, 0.1])[0]
        window.add(score, {"amount": None, "channel": 1.0})  # amounts stopped being logged
    values = window.psi()
    assert values["score"] > PSI_ALERT_THRESHOLD
    assert values["amount"] > PSI_ALERT_THRESHOLD
    assert values["channel"] > PSI_ALERT_THRESHOLD  # everything on one code


def test_window_forgets_the_oldest_decisions_exactly():
    window = DriftWindow(_window_reference(), size=4)
    for score in (0.1, 0.1, 0.1, 0.1, 0.9, 0.9):  # the first two fall out
        window.add(score, {})
    assert len(window) == 4
    assert window.counts[0] == [2, 2, 0]
    assert window.psi()["score"] == pytest.approx(0.0)
    assert DriftWindow(_window_reference()).psi() == {}


def test_binning_without_categories_is_numeric():
    binning = Binning("amount", (0.2, 0.3, 0.4, 0.1), edges=(10.0, 50.0))
    assert [binning.bin_of(v) for v in (9.99, 10.0, 49.0, 50.0, 1e9)] == [0, 1, 1, 2, 2]
