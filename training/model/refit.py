"""The refit design: choose out of time, then learn from every labelled day (no I/O).

For one model kind: the candidates are scored out of time on the split's folds
(training.model.search); the thresholds are chosen on the chosen candidate's pooled fold scores
(training.model.thresholds, the same rule as ever); the model is refit with the chosen
parameters on the whole training window and scores the test period.

The thresholds carry over to the refit model as probabilities. Every fit (each fold's and the
refit) is the same procedure on more or fewer days: log-loss boosting (or a forest's vote
share) on every fraud and the same weighted genuine sample, so a score means "estimated chance
of fraud" alike for all of them, and a threshold chosen on the fold models' scores asks the
refit model for the same confidence. The alert-rate cap is a share of traffic, not a
confidence: it is enforced again on the refit model's scores of the label-delay days before the
test (traffic it never learned from, known when it goes into service; see
training.model.thresholds.cap_on_recent). `carry_over_check` tests the rule on the folds
themselves, without the test period: thresholds chosen on the earlier folds, carried to the
last fold's model (which learned from more days, as the refit does) with the cap enforced on
its own label-delay days, and what they achieved on its validation days.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from training.data import FeatureSpec, TimeSplit
from training.model.estimators import ModelKind, fit_model, fraud_scores, genuine_sample
from training.model.search import (
    FoldFrames,
    FoldScores,
    MapFits,
    OutOfTime,
    fold_frames,
    out_of_time_search,
)
from training.model.thresholds import (
    PolicyTargets,
    ThresholdChoice,
    cap_on_recent,
    choose_thresholds,
)


@dataclass(frozen=True)
class Fitter:
    """How every model of one training run is fitted: kind, inputs, seed, genuine sample."""

    kind: ModelKind
    spec: FeatureSpec
    seed: int
    genuine_share: float

    def fit(self, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
        """A model of the features the rows have (see `learnable`); it knows its inputs
        (`feature_names_in_`), which `scores` reads."""
        keep, weights = genuine_sample(
            frame["transaction_id"], frame["is_fraud"], self.genuine_share, self.seed
        )
        rows = frame.loc[keep]
        return fit_model(
            self.kind,
            rows[self.learnable(rows)],
            rows["is_fraud"],
            self.spec.categorical,
            self.seed,
            params,
            # Unit weights would take the estimator's weighted code path: the same model in
            # theory, not to the last bit.
            sample_weight=None if self.genuine_share == 1.0 else weights,
        )

    def learnable(self, rows: pd.DataFrame) -> list[str]:
        """The inputs with a value in at least one of the rows a fit learns from: a feature
        missing on all of them (a young card's typical day in a short first fold) teaches
        nothing, and scikit-learn's binning cannot take it."""
        return [name for name in self.spec.names if rows[name].notna().any()]

    def scores(self, model: Any, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        return fraud_scores(model, frame[list(model.feature_names_in_)])

    def score_fold(self, params: dict[str, Any], part: FoldFrames) -> FoldScores:
        model = self.fit(part.train, params)
        return FoldScores(self.scores(model, part.validation), self.scores(model, part.recent))


@dataclass
class RefitResult:
    search: OutOfTime
    choice: ThresholdChoice
    model: Any
    params: dict[str, Any]
    test_scores: npt.NDArray[np.float64]
    recent_scores: npt.NDArray[np.float64]  # of the days between training and test
    fit_seconds: float  # the refit alone
    carry_over: dict[str, Any] | None


def refit_out_of_time(
    fitter: Fitter,
    train: pd.DataFrame,
    test: pd.DataFrame,
    split: TimeSplit,
    candidates: Sequence[dict[str, Any]],
    targets: PolicyTargets,
    recent: pd.DataFrame | None = None,
    map_fits: MapFits = map,
) -> RefitResult:
    """Search on the folds, thresholds on the chosen candidate's out-of-time scores, refit on
    all of `train`, score `test`. `recent`: the days between `train` and `test` (labels
    pending), on whose refit scores the alert-rate cap is enforced again."""
    search = out_of_time_search(
        fold_frames(train, split.folds), candidates, fitter.score_fold, map_fits=map_fits
    )
    labels = search.validation["is_fraud"].to_numpy()
    chosen = choose_thresholds(search.best.scores, labels, targets)
    started = time.perf_counter()
    model = fitter.fit(train, search.best.params)
    fit_seconds = time.perf_counter() - started
    recent_scores = (
        fitter.scores(model, recent) if recent is not None and len(recent) else np.empty(0)
    )
    return RefitResult(
        search=search,
        choice=cap_on_recent(chosen, recent_scores, "the days before the test"),
        model=model,
        params=search.best.params,
        test_scores=fitter.scores(model, test),
        recent_scores=recent_scores,
        fit_seconds=fit_seconds,
        carry_over=carry_over_check(search, targets),
    )


def carry_over_check(search: OutOfTime, targets: PolicyTargets) -> dict[str, Any] | None:
    """Thresholds chosen on the chosen candidate's scores of every fold but the last, applied
    unchanged to the last fold's model; what they achieved there (None with a single fold)."""
    last = len(search.folds)
    if last < 2:
        return None
    labels = search.validation["is_fraud"].to_numpy()
    scores = search.best.scores
    earlier = search.fold_of_row < last
    choice = cap_on_recent(
        choose_thresholds(scores[earlier], labels[earlier], targets),
        search.best.recent_scores[-1],
        f"fold {last}'s label-delay days",
    )
    later_scores, later_labels = scores[~earlier], labels[~earlier]
    declined = later_scores >= choice.thresholds.decline
    alerted = later_scores >= choice.thresholds.review
    frauds = int(later_labels.sum())
    return {
        "chosen_on_folds": list(range(1, last)),
        "applied_to_fold": last,
        "thresholds": choice.thresholds.as_dict(),
        "decline_rule": choice.decline_rule,
        "carried": choice.carried,
        "chosen_on": {
            "decline_precision": choice.decline_precision,
            "decline_precision_lower_bound": choice.decline_precision_lower_bound,
            "alert_rate": choice.alert_rate,
            "alert_recall": choice.alert_recall,
        },
        "achieved": {
            "rows": int(later_labels.size),
            "fraud": frauds,
            "declined": int(declined.sum()),
            "decline_precision": float(later_labels[declined].mean()) if declined.any() else None,
            "decline_recall": float(later_labels[declined].sum() / frauds) if frauds else None,
            "alert_rate": float(alerted.mean()),
            "alert_recall": float(later_labels[alerted].sum() / frauds) if frauds else None,
        },
        "decline_precision_target": targets.decline_precision,
    }
