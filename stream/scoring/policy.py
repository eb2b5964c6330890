"""Decision policy: a score and the thresholds stored with the model version -> a tier.

Pure functions; the scorer and the evaluation code share them so that the tiers reported at
training time are exactly the tiers the stream produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from fraud.errors import ValidationError

Tier = Literal["approve", "review", "decline"]
TIERS: tuple[Tier, ...] = ("approve", "review", "decline")
ALERT_TIERS: frozenset[str] = frozenset({"review", "decline"})


@dataclass(frozen=True)
class Thresholds:
    """`score >= decline` declines; `review <= score < decline` goes to an analyst."""

    review: float
    decline: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.review <= self.decline <= 1.0:
            raise ValidationError(
                f"thresholds must satisfy 0 <= review <= decline <= 1, got "
                f"review={self.review} decline={self.decline}",
                field="thresholds",
                rule="order",
            )

    def as_dict(self) -> dict[str, float]:
        return {"review": self.review, "decline": self.decline}


def decide(score: float, thresholds: Thresholds) -> Tier:
    """The tier for one score."""
    if score >= thresholds.decline:
        return "decline"
    if score >= thresholds.review:
        return "review"
    return "approve"


def decide_many(scores: npt.ArrayLike, thresholds: Thresholds) -> npt.NDArray[np.str_]:
    """Vectorised `decide` for a batch of scores."""
    values = np.asarray(scores, dtype=float)
    tiers = np.full(values.shape, "approve", dtype="<U7")
    tiers[values >= thresholds.review] = "review"
    tiers[values >= thresholds.decline] = "decline"
    return tiers
