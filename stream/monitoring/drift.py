"""Population stability index (PSI) of scores and features against a training reference. Pure.

The reference is what training stores with each model version (artifact
`reference_distribution.json` of the version's run, written by `training.evaluation.reference`): per
period ("validation", "test") the score histogram on fixed bin edges and, for the most important
features, bin edges (numeric) or codes (categorical) with the share of rows in each, plus the
share of missing values. `parse_reference` turns one period of it into `Binning`s;
`DriftWindow` buckets the live decisions of one model version on those bins and gives the PSI
of every variable.

Bins follow training's rule: edges e0 < e1 < ... < eK make K bins, bin i holds e_i <= v < e_(i+1),
and values below e0 or at or above eK count in the first or the last bin. Categorical features
have one bin per code seen in training and one more for codes it never saw; every variable has
a last bin for missing values.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

from fraud.errors import ValidationError

SCORE = "score"
# Conventional reading: < 0.1 stable, 0.1-0.2 moderate shift, > 0.2 significant shift (alert).
PSI_ALERT_THRESHOLD = 0.2
# An empty bin on either side would make the log infinite; a floor keeps PSI finite and stable.
PROPORTION_FLOOR = 1e-4


def psi(expected: Sequence[float], actual_counts: Sequence[int]) -> float:
    """PSI = sum over bins of (actual - expected) * ln(actual / expected), proportions floored."""
    if len(expected) != len(actual_counts):
        raise ValueError(f"{len(expected)} expected bins but {len(actual_counts)} actual")
    total = sum(actual_counts)
    if total <= 0:
        raise ValueError("PSI needs at least one actual observation")
    value = 0.0
    for share, count in zip(expected, actual_counts, strict=True):
        e = max(share, PROPORTION_FLOOR)
        a = max(count / total, PROPORTION_FLOOR)
        value += (a - e) * math.log(a / e)
    return value


def bin_index(inner_edges: npt.ArrayLike, values: npt.ArrayLike) -> Any:
    """The bin of each value, the one rule for training's reference and the live window:
    bin i holds inner[i-1] <= v < inner[i]; below the first inner edge is bin 0, at or above
    the last is the last bin. A scalar gives a scalar."""
    return np.searchsorted(np.asarray(inner_edges, dtype=float), values, side="right")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class Binning:
    """How one variable is bucketed, and the training sample's share in each bucket.

    `expected` holds one share per bin and then the missing share, so it has one entry more
    than the variable has bins.
    """

    name: str
    expected: tuple[float, ...]
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def missing_bin(self) -> int:
        return len(self.expected) - 1

    def bin_of(self, value: Any) -> int:
        if _is_missing(value):
            return self.missing_bin
        if self.categories:
            code = _code(value)
            return self.categories.index(code) if code in self.categories else len(self.categories)
        try:
            number = float(value)
        except (TypeError, ValueError):
            return self.missing_bin  # text where a number belongs is as good as missing
        if math.isnan(number):
            return self.missing_bin
        return int(bin_index(self.edges, number))


def _code(value: Any) -> str:
    """Decisions log category codes as numbers (3.0); the reference keys them as text ("3")."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class DriftReference:
    score: Binning
    features: tuple[Binning, ...]
    period: str

    def variables(self) -> tuple[Binning, ...]:
        return (self.score, *self.features)


# -- reading it back (serving side) ------------------------------------------------------------


def _fail(field: str, problem: str) -> ValidationError:
    return ValidationError(f"drift reference: '{field}' {problem}", field=field, rule="reference")


def _shares(value: Any, field: str, size: int | None = None) -> list[float]:
    if not isinstance(value, list) or not value:
        raise _fail(field, "must be a non-empty list of shares")
    if any(isinstance(v, bool) or not isinstance(v, int | float) or v < 0 for v in value):
        raise _fail(field, "must hold non-negative numbers")
    if size is not None and len(value) != size:
        raise _fail(field, f"must have one share per bin ({size}), has {len(value)}")
    if abs(sum(value) - 1.0) > 1e-3 and sum(value) != 0:
        raise _fail(field, f"must sum to 1, sums to {sum(value):.6f}")
    return [float(v) for v in value]


def _inner_edges(value: Any, field: str) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) < 2:
        raise _fail(field, "must list at least two edges")
    if any(isinstance(e, bool) or not isinstance(e, int | float) for e in value):
        raise _fail(field, "must hold numbers")
    if any(b <= a for a, b in pairwise(value)):
        raise _fail(field, "must be strictly increasing")
    return tuple(float(e) for e in value[1:-1])


def _with_missing(shares: Sequence[float], missing: float) -> tuple[float, ...]:
    """Shares of present values rescaled to the whole sample, then the missing share."""
    return (*(share * (1.0 - missing) for share in shares), missing)


def _parse_feature(name: str, body: Any, period: str) -> Binning:
    field = f"features.{name}"
    if not isinstance(body, Mapping):
        raise _fail(field, "must be an object")
    missing = (body.get("missing_share") or {}).get(period, 0.0)
    if isinstance(missing, bool) or not isinstance(missing, int | float) or not 0 <= missing <= 1:
        raise _fail(f"{field}.missing_share.{period}", "must be a share between 0 and 1")
    kind = body.get("kind")
    if kind == "numeric":
        edges = _inner_edges(body.get("bin_edges"), f"{field}.bin_edges")
        shares = _shares(body.get(period), f"{field}.{period}", len(edges) + 1)
        return Binning(name, _with_missing(shares, missing), edges=edges)
    if kind == "categorical":
        codes = body.get(period)
        if not isinstance(codes, Mapping):
            raise _fail(f"{field}.{period}", "must map each code to its share")
        categories = tuple(str(code) for code in codes)
        # The extra bin before "missing" holds codes training never saw (expected share 0).
        shares = [*_shares(list(codes.values()), f"{field}.{period}"), 0.0] if codes else [0.0]
        return Binning(name, _with_missing(shares, missing), categories=categories)
    raise _fail(f"{field}.kind", f"must be 'numeric' or 'categorical', got {kind!r}")


def parse_reference(document: Any, period: str | None = None) -> DriftReference:
    """One period of training's reference as `Binning`s; ValidationError names a wrong field.

    `period` defaults to the one the bin edges were computed on (`edges_from`).
    """
    if not isinstance(document, Mapping):
        raise _fail("<document>", "must be a JSON object")
    score = document.get("score")
    if not isinstance(score, Mapping):
        raise _fail("score", "must be an object")
    period = period or document.get("edges_from") or "validation"
    if period not in score:
        periods = sorted(k for k in score if k != "bin_edges")
        raise _fail(f"score.{period}", f"is missing; the reference has periods {periods}")
    edges = _inner_edges(score.get("bin_edges"), "score.bin_edges")
    score_bins = Binning(
        SCORE, _with_missing(_shares(score[period], f"score.{period}", len(edges) + 1), 0.0), edges
    )
    features = document.get("features", {})
    if not isinstance(features, Mapping):
        raise _fail("features", "must map feature names to their bins")
    if SCORE in features:
        raise _fail(f"features.{SCORE}", "clashes with the score's own name")
    parsed = tuple(_parse_feature(str(name), body, period) for name, body in features.items())
    return DriftReference(score=score_bins, features=parsed, period=period)


# -- live window ---------------------------------------------------------------------------


class DriftWindow:
    """The last `size` decisions of one model version, counted on the reference's bins."""

    def __init__(self, reference: DriftReference, size: int = 5000) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.reference = reference
        self.variables = reference.variables()
        self.counts = [[0] * len(v.expected) for v in self.variables]
        self.rows: deque[tuple[int, ...]] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, score: float, features: Mapping[str, Any]) -> None:
        if len(self.rows) == self.rows.maxlen:
            for counts, index in zip(self.counts, self.rows[0], strict=True):
                counts[index] -= 1
        row = (
            self.variables[0].bin_of(score),
            *(v.bin_of(features.get(v.name)) for v in self.variables[1:]),
        )
        self.rows.append(row)
        for counts, index in zip(self.counts, row, strict=True):
            counts[index] += 1

    def psi(self) -> dict[str, float]:
        """PSI of every variable (the score under "score"); empty while the window is empty."""
        if not self.rows:
            return {}
        return {
            v.name: psi(v.expected, counts)
            for v, counts in zip(self.variables, self.counts, strict=True)
        }
