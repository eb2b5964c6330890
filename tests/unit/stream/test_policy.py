from __future__ import annotations

import numpy as np
import pytest

from fraud.errors import ValidationError
from stream.scoring import Thresholds, decide, decide_many


def test_tiers_at_and_around_the_thresholds():
    t = Thresholds(review=0.2, decline=0.8)
    assert [decide(s, t) for s in (0.0, 0.19999, 0.2, 0.5, 0.79999, 0.8, 1.0)] == [
        "approve",
        "approve",
        "review",
        "review",
        "review",
        "decline",
        "decline",
    ]


def test_vectorised_matches_scalar():
    t = Thresholds(review=0.1, decline=0.6)
    scores = np.linspace(0, 1, 101)
    assert list(decide_many(scores, t)) == [decide(s, t) for s in scores]


def test_equal_thresholds_mean_no_review_tier():
    t = Thresholds(review=0.7, decline=0.7)
    assert {decide(s, t) for s in np.linspace(0, 1, 51)} == {"approve", "decline"}


@pytest.mark.parametrize(("review", "decline"), [(0.9, 0.5), (-0.1, 0.5), (0.2, 1.5)])
def test_inconsistent_thresholds_are_refused(review, decline):
    with pytest.raises(ValidationError, match="review <= decline"):
        Thresholds(review=review, decline=decline)
