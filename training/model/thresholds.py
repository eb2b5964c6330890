"""Choosing the decline and review thresholds on the validation period.

decline: the lowest score whose decline set (score >= threshold) has precision >= the target
         (0.95) with 95% confidence: the one-sided Clopper-Pearson lower bound of its validation
         precision reaches the target. Picking the lowest threshold whose *observed* precision
         just reaches 95% would, by construction, fall short on new data about half the time
         (on the default history: 95.0% on validation, 92.5% on the test period; with the bound,
         97.0% and 94.7%). When the validation period holds too few frauds for any threshold to
         show the target with that confidence (under 59 in a row even with no false decline),
         the observed precision is used and a note says so.
review:  the highest score at which review + decline together catch >= the recall target
         (0.90) of the fraud, unless that would alert on more than the alert-rate cap (2% of
         transactions); then the cap binds and the review threshold is raised to meet it.

Candidate thresholds are the observed scores, so every number reported here can be recomputed
by hand from the validation scores and labels.

Carried to another model (the refit design's final model, whose thresholds were chosen on the
folds' models): both thresholds carry over as probabilities, and the alert-rate cap, a budget
on the share of traffic rather than a level of confidence, is enforced again on the new
model's own scores of recent traffic it never learned from (`cap_on_recent`): a model that
learned from more days spreads its low scores differently, and on the default history's folds
the review probability alone alerted on 2.3% of the next days' traffic instead of 2%.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from fraud.errors import ValidationError
from stream.scoring import Thresholds
from training.evaluation import threshold_for_alert_rate


@dataclass(frozen=True)
class PolicyTargets:
    decline_precision: float = 0.95
    recall: float = 0.90
    max_alert_rate: float = 0.02
    # One-sided confidence that the decline set's precision reaches the target; None: the
    # observed validation precision is enough.
    decline_confidence: float | None = 0.95

    def __post_init__(self) -> None:
        if self.decline_confidence is not None and not 0.5 <= self.decline_confidence < 1:
            raise ValueError(
                f"decline_confidence must be in [0.5, 1) or None, got {self.decline_confidence}"
            )


@dataclass
class ThresholdChoice:
    thresholds: Thresholds
    targets: PolicyTargets
    decline_precision: float  # on the validation period
    decline_recall: float
    alert_recall: float  # review + decline
    alert_rate: float
    decline_target_met: bool
    recall_target_met: bool
    alert_cap_binds: bool
    # Lower confidence bound of the decline set's validation precision (None without declines
    # or when no confidence was asked for) and how the decline threshold was chosen.
    decline_precision_lower_bound: float | None = None
    decline_rule: str = "observed precision"
    notes: list[str] = field(default_factory=list)
    # How the thresholds were carried to another model (see `cap_on_recent`); None: not carried.
    carried: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["thresholds"] = self.thresholds.as_dict()
        return result


@dataclass(frozen=True)
class _Curve:
    """For each distinct score (descending): how many rows and frauds score at least that."""

    values: npt.NDArray[np.float64]
    flagged: npt.NDArray[np.int64]
    caught: npt.NDArray[np.int64]


def _curve(scores: npt.NDArray[np.float64], labels: npt.NDArray[np.int64]) -> _Curve:
    order = np.argsort(-scores, kind="stable")
    ordered = scores[order]
    caught = np.cumsum(labels[order])
    # The last position of each run of equal scores closes that threshold's set.
    ends = np.flatnonzero(np.r_[ordered[1:] != ordered[:-1], True])
    return _Curve(ordered[ends], ends + 1, caught[ends])


def precision_lower_bound(
    caught: npt.ArrayLike, flagged: npt.ArrayLike, confidence: float
) -> npt.NDArray[np.float64]:
    """One-sided Clopper-Pearson lower bound of precision = caught / flagged, elementwise."""
    from scipy.stats import beta

    k = np.asarray(caught, dtype=float)
    n = np.asarray(flagged, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = beta.ppf(1.0 - confidence, k, n - k + 1.0)
    return np.where(k > 0, bound, 0.0)


def choose_thresholds(
    scores: npt.ArrayLike, labels: npt.ArrayLike, targets: PolicyTargets | None = None
) -> ThresholdChoice:
    targets = targets or PolicyTargets()
    score_array = np.asarray(scores, dtype=float)
    label_array = np.asarray(labels, dtype=np.int64)
    if score_array.shape != label_array.shape or score_array.size == 0:
        raise ValidationError("scores and labels must be non-empty and of equal length")
    positives = int(label_array.sum())
    if positives == 0:
        raise ValidationError(
            "the validation period has no fraud: thresholds cannot be chosen",
            field="is_fraud",
            rule="positives",
        )
    n = score_array.size
    curve = _curve(score_array, label_array)
    precision = curve.caught / curve.flagged
    recall = curve.caught / positives
    notes: list[str] = []

    meets_precision = np.flatnonzero(precision >= targets.decline_precision)
    rule = "observed precision"
    lower_bound = None
    if targets.decline_confidence is not None and meets_precision.size:
        bounds = precision_lower_bound(curve.caught, curve.flagged, targets.decline_confidence)
        confident = np.flatnonzero(bounds >= targets.decline_precision)
        if confident.size:
            meets_precision = confident
            rule = f"{targets.decline_confidence:.0%} lower confidence bound"
        else:
            notes.append(
                f"too few validation frauds to show decline precision >= "
                f"{targets.decline_precision:.0%} with {targets.decline_confidence:.0%} "
                "confidence: decline threshold from the observed precision"
            )
        lower_bound = float(bounds[meets_precision.max()])
    if meets_precision.size:
        decline = float(curve.values[meets_precision.max()])
    else:
        decline = 1.0
        notes.append(
            f"no threshold reaches decline precision {targets.decline_precision:.0%} on "
            "validation: decline set to 1.0 (practically no automatic declines)"
        )

    meets_recall = np.flatnonzero(recall >= targets.recall)
    review_for_recall = float(curve.values[meets_recall.min()])
    within_cap = np.flatnonzero(curve.flagged <= targets.max_alert_rate * n)
    review_for_cap = float(curve.values[within_cap.max()]) if within_cap.size else np.inf
    cap_binds = review_for_cap > review_for_recall
    review = max(review_for_recall, review_for_cap)
    if cap_binds:
        notes.append(
            f"alert-rate cap {targets.max_alert_rate:.1%} binds: review threshold raised from "
            f"{review_for_recall:.6g} (recall {targets.recall:.0%}) to {min(review, decline):.6g}"
        )
    if review > decline:
        if review_for_cap > decline:
            notes.append("declines alone exceed the alert-rate cap on validation")
        review = decline

    thresholds = Thresholds(review=min(review, decline), decline=decline)
    declined = score_array >= thresholds.decline
    alerted = score_array >= thresholds.review
    decline_precision = float(label_array[declined].mean()) if declined.any() else float("nan")
    alert_recall = float(label_array[alerted].sum() / positives)
    return ThresholdChoice(
        thresholds=thresholds,
        targets=targets,
        decline_precision=decline_precision,
        decline_recall=float(label_array[declined].sum() / positives),
        alert_recall=alert_recall,
        alert_rate=float(alerted.mean()),
        decline_target_met=bool(meets_precision.size),
        recall_target_met=alert_recall >= targets.recall,
        alert_cap_binds=bool(cap_binds),
        decline_precision_lower_bound=lower_bound,
        decline_rule=rule,
        notes=notes,
    )


def cap_on_recent(
    choice: ThresholdChoice, recent_scores: npt.ArrayLike, where: str = "recent days"
) -> ThresholdChoice:
    """`choice` carried to another model: the decline threshold as it is, the review threshold
    raised (never lowered) to the lowest score that alerts on at most the cap's share of
    `recent_scores` (that model's scores of traffic it never learned from), at most up to the
    decline threshold. Without recent scores the thresholds carry over unchanged."""
    scores = np.asarray(recent_scores, dtype=float)
    cap = choice.targets.max_alert_rate
    review, decline = choice.thresholds.review, choice.thresholds.decline
    carried: dict[str, Any] = {
        "rule": "probabilities; review raised to keep the alert-rate cap on " + where,
        "review_from_validation": review,
        "recent_rows": int(scores.size),
        "recent_alert_rate_before": float((scores >= review).mean()) if scores.size else None,
    }
    notes = list(choice.notes)
    if scores.size and (scores >= review).mean() > cap:
        within = threshold_for_alert_rate(scores, cap)
        if within > review:
            notes.append(
                f"alert-rate cap {cap:.1%} on {where}: review threshold raised from "
                f"{review:.6g} to {min(within, decline):.6g}"
            )
            review = min(within, decline)
    carried["recent_alert_rate"] = float((scores >= review).mean()) if scores.size else None
    carried["review_raised"] = review != choice.thresholds.review
    return replace(
        choice,
        thresholds=Thresholds(review=review, decline=decline),
        notes=notes,
        carried=carried,
    )
