"""Out-of-time model selection on rolling-origin folds, and a bounded hyper-parameter search.

Every candidate is fitted on each fold's training days and scores that fold's validation days,
which begin one label delay after them (training.data.split). A candidate's objective is its
mean average precision over the folds (each fold counts once, whatever its fraud count); the
first candidate is the estimator's defaults, so the search can only replace them with a
setting that did better out of time, and ties keep the earlier candidate. The chosen
candidate's out-of-time scores, pooled over the folds, are what the thresholds are chosen on.

Pure: fitting goes through the `fit` callable the caller passes (which knows the seed, the
genuine sample and the thread limits) and MLflow logging is the caller's business, so the same
data and seed always give the same trials.

    candidates = search_candidates(trials=6, seed=1, base=model_params("hist_gradient_boosting"))
    result = out_of_time_search(fold_frames(train, split.folds), candidates, score_fold)
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from fraud.errors import ValidationError
from training.data import Fold

# The main hyper-parameters of gradient boosting, a few values each: 192 settings, of which a
# search draws a handful without replacement (a fit of the default history's largest fold takes
# tens of seconds, and `make train` must stay within minutes on two cores). No l2 of 0: on the
# default history's folds, rate 0.1 without it diverged on two of three folds (mean AP 0.32 and
# 0.59 against 0.76 for the defaults), with the weighted genuine sample.
SEARCH_SPACE: dict[str, tuple[Any, ...]] = {
    "learning_rate": (0.05, 0.1),
    "max_iter": (200, 400),
    "max_leaf_nodes": (15, 31, 63),
    "min_samples_leaf": (25, 50, 100, 200),
    "l2_regularization": (1.0, 10.0),
}


@dataclass(frozen=True)
class FoldFrames:
    """One fold's rows: what its model learns from, the validation days it scores, and the
    label-delay days between them (scored too: traffic the model never learned from)."""

    fold: Fold
    train: pd.DataFrame
    validation: pd.DataFrame
    recent: pd.DataFrame


@dataclass(frozen=True)
class FoldScores:
    """A fold model's scores of its validation rows and of its recent rows."""

    validation: npt.NDArray[np.float64]
    recent: npt.NDArray[np.float64]


def fold_frames(frame: pd.DataFrame, folds: Sequence[Fold]) -> list[FoldFrames]:
    """Each fold's training and validation rows of `frame` (by `timestamp`); every validation
    window needs both fraud and legitimate transactions, or it cannot rank a candidate."""
    result = []
    for number, fold in enumerate(folds, start=1):
        train = frame.loc[fold.train_mask(frame["timestamp"])].reset_index(drop=True)
        validation = frame.loc[fold.validation_mask(frame["timestamp"])].reset_index(drop=True)
        recent = frame.loc[fold.recent_mask(frame["timestamp"])].reset_index(drop=True)
        for name, part in (("training", train), ("validation", validation)):
            if part.empty or part["is_fraud"].nunique() < 2:
                raise ValidationError(
                    f"fold {number}'s {name} days ({fold.as_dict()}) hold {len(part)} "
                    f"transactions and {int(part['is_fraud'].sum())} fraud: each fold needs "
                    "both fraud and legitimate transactions; use fewer folds or more "
                    "validation days",
                    field="folds",
                    rule="labels",
                )
        result.append(FoldFrames(fold, train, validation, recent))
    return result


def search_candidates(trials: int, seed: int, base: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`base` first, then up to `trials - 1` distinct settings of SEARCH_SPACE drawn at random
    (seeded), each on top of `base` (which keeps the parameters the space leaves alone)."""
    if trials < 1:
        raise ValueError(f"a search needs at least one trial, got {trials}")
    names = list(SEARCH_SPACE)
    grid = list(itertools.product(*(SEARCH_SPACE[name] for name in names)))
    rng = np.random.default_rng(seed)
    chosen = [dict(base)]
    for index in rng.permutation(len(grid)):
        if len(chosen) == trials:
            break
        candidate = {**base, **dict(zip(names, grid[index], strict=True))}
        if candidate not in chosen:
            chosen.append(candidate)
    return chosen


@dataclass
class FoldResult:
    fold: int
    rows: int
    fraud: int
    average_precision: float
    roc_auc: float
    fit_seconds: float


@dataclass
class Trial:
    number: int
    params: dict[str, Any]
    folds: list[FoldResult]
    scores: npt.NDArray[np.float64] = field(repr=False)  # over `OutOfTime.validation`'s rows
    recent_scores: list[npt.NDArray[np.float64]] = field(repr=False, default_factory=list)

    @property
    def objective(self) -> float:
        """Mean average precision over the folds."""
        return float(np.mean([fold.average_precision for fold in self.folds]))

    @property
    def fit_seconds(self) -> float:
        return float(sum(fold.fit_seconds for fold in self.folds))

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "params": self.params,
            "mean_average_precision": self.objective,
            "fit_seconds": self.fit_seconds,
            "folds": [vars(fold) for fold in self.folds],
        }


@dataclass
class OutOfTime:
    """The trials of a search, and the rows their out-of-time scores belong to: the folds'
    validation days one after another (time order)."""

    validation: pd.DataFrame
    folds: list[Fold]
    fold_of_row: npt.NDArray[np.int64]  # 1-based fold number of each validation row
    trials: list[Trial]
    chosen: int  # index into trials

    @property
    def best(self) -> Trial:
        return self.trials[self.chosen]

    def summary(self) -> dict[str, Any]:
        return {
            "objective": "mean average precision over the folds' validation days",
            "folds": [fold.as_dict() for fold in self.folds],
            "trials": [trial.to_dict() for trial in self.trials],
            "chosen_trial": self.best.number,
            "chosen_params": self.best.params,
        }


# Fits a candidate on a fold's training rows; returns its scores of the validation and recent rows.
ScoreFold = Callable[[dict[str, Any], FoldFrames], FoldScores]
# How the (candidate, fold) fits are run: the builtin `map`, or an executor's, to run them
# side by side. Results come back in order either way.
MapFits = Callable[..., Iterable[tuple[FoldScores, float]]]


def out_of_time_search(
    frames: Sequence[FoldFrames],
    candidates: Sequence[dict[str, Any]],
    score_fold: ScoreFold,
    on_trial: Callable[[Trial], None] = lambda trial: None,
    map_fits: MapFits = map,
) -> OutOfTime:
    """Every candidate on every fold; the chosen one has the highest objective (the earliest
    among equals)."""
    if not frames or not candidates:
        raise ValueError("a search needs at least one fold and one candidate")
    validation = pd.concat([part.validation for part in frames], ignore_index=True)
    fold_of_row = np.repeat(
        np.arange(1, len(frames) + 1), [len(part.validation) for part in frames]
    ).astype(np.int64)

    def timed(job: tuple[dict[str, Any], FoldFrames]) -> tuple[FoldScores, float]:
        started = time.perf_counter()
        scored = score_fold(*job)
        return scored, time.perf_counter() - started

    jobs = [(dict(params), part) for params in candidates for part in frames]
    fitted = iter(map_fits(timed, jobs))
    trials = []
    for number, params in enumerate(candidates, start=1):
        results, scores, recent = [], [], []
        for index, part in enumerate(frames, start=1):
            scored, seconds = next(fitted)
            fold_scores = np.asarray(scored.validation, dtype=float)
            labels = part.validation["is_fraud"].to_numpy()
            results.append(
                FoldResult(
                    fold=index,
                    rows=len(labels),
                    fraud=int(labels.sum()),
                    average_precision=float(average_precision_score(labels, fold_scores)),
                    roc_auc=float(roc_auc_score(labels, fold_scores)),
                    fit_seconds=seconds,
                )
            )
            scores.append(fold_scores)
            recent.append(np.asarray(scored.recent, dtype=float))
        trial = Trial(number, dict(params), results, np.concatenate(scores), recent)
        trials.append(trial)
        on_trial(trial)
    objectives = [trial.objective for trial in trials]
    chosen = int(np.argmax(objectives))  # the first of the best
    return OutOfTime(validation, [part.fold for part in frames], fold_of_row, trials, chosen)
