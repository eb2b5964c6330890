"""Train, choose thresholds, evaluate, audit and explain on one time split (no I/O).

`fraud train`, `fraud backtest` and `fraud retrain` all come here; MLflow logging, files and
the console are the callers' business, so the same data and seed always give the same outcome.

Two designs, by the split (training.data.split): with folds (refit) each model kind is chosen
and thresholded out of time on the folds and refit on the whole training window
(training.model.refit); without (holdout) it is fitted on the training window and thresholded
on the validation window. The gradient-boosting model is the product; the RandomForest
baseline goes through the same design on the same rows (no search). On request the previous
design runs beside them on the same test rows (a holdout split of the same window, the
estimator's default parameters, the features before the card habits, every row): the before
of a before/after comparison.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from fraud.errors import ValidationError
from stream.features import CARD_HABIT_FEATURES
from stream.scoring import ReasonCoder
from training.data import WINDOWS, FeatureSpec, TimeSplit, holdout_within
from training.evaluation import (
    FairnessGate,
    alert_rate_curve,
    audit,
    bank_targets,
    evaluate_window,
    global_importance,
    reference_distribution,
)
from training.model.estimators import BASELINE_KIND, DEFAULT_KIND, ModelKind, model_params
from training.model.refit import Fitter, refit_out_of_time
from training.model.search import MapFits, OutOfTime, search_candidates
from training.model.thresholds import PolicyTargets, ThresholdChoice, choose_thresholds

IMPORTANCE_SAMPLE = 2000
REFERENCE_TOP_FEATURES = 10


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 1
    targets: PolicyTargets = field(default_factory=PolicyTargets)
    fairness_gate: FairnessGate = field(default_factory=FairnessGate)
    with_baseline: bool = True
    # Hyper-parameters replacing the defaults of training.model.estimators, by model kind (small, fast
    # models in tests; experiments). Recorded with the run.
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # OpenMP threads for gradient boosting. One by default: on a shared two-core machine two
    # threads spin-wait for each other whenever another process holds a core; measured on the
    # default history while other jobs ran, 400 iterations took 284 s with two threads and
    # 42 s with one.
    threads: int = 1
    # Hyper-parameter candidates of gradient boosting tried on the folds (refit design only):
    # its defaults (with `overrides`), then random settings of training.model.search.
    search_trials: int = 1
    # Share of the genuine transactions each fit learns from (every fraud always; see
    # training.model.estimators.genuine_sample). 1: every row.
    genuine_share: float = 1.0
    # Also run the previous design on the same test rows (refit design only).
    previous_design: bool = False
    # Fits of the search (candidate x fold) run side by side on this many threads; each fit's
    # native code releases the GIL and keeps to `threads` OpenMP threads. Same results for any
    # number: every fit is seeded and independent.
    jobs: int = 1
    # A test window without fraud (or without labels yet) is refused unless this is off: a
    # backtest scores such a window and evaluates what its labels allow; a model meant for
    # promotion needs a test period that can judge it.
    test_needs_fraud: bool = True

    def params(self, kind: ModelKind) -> dict[str, Any]:
        return {**model_params(kind), **self.overrides.get(kind, {})}


@dataclass
class ModelOutcome:
    kind: str
    model: Any
    # window -> scores; in the refit design, "validation" holds the folds' out-of-time scores
    scores: dict[str, npt.NDArray[np.float64]]
    threshold_choice: ThresholdChoice
    evaluation: dict[str, dict[str, Any]]  # window ("validation", "test") -> metrics
    fit_seconds: float
    params: dict[str, Any] = field(default_factory=dict)
    search: OutOfTime | None = None
    carry_over: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "kind": self.kind,
            "params": self.params,
            "thresholds": self.threshold_choice.to_dict(),
            "evaluation": self.evaluation,
            "fit_seconds": self.fit_seconds,
        }
        if self.search is not None:
            result["search"] = self.search.summary()
        if self.carry_over is not None:
            result["carry_over_check"] = self.carry_over
        return result


@dataclass
class TrainingOutcome:
    split: TimeSplit
    spec: FeatureSpec
    config: TrainConfig
    windows: dict[str, pd.DataFrame]
    default: ModelOutcome
    baseline: ModelOutcome | None
    fairness: dict[str, Any] | None
    importance: pd.Series
    reference: dict[str, Any]
    targets_on_test: dict[str, Any]
    dropped_features: list[str] = field(default_factory=list)
    alert_rate_curve: list[dict[str, Any]] = field(default_factory=list)
    previous_design: ModelOutcome | None = None
    previous_split: TimeSplit | None = None

    def summary(self) -> dict[str, Any]:
        """Everything a report or the registry needs, as plain JSON-able data."""
        result: dict[str, Any] = {
            "split": self.split.as_dict(),
            "design": "refit" if self.split.refit else "holdout",
            "rows": {name: len(frame) for name, frame in self.windows.items()},
            "fraud": {name: int(frame["is_fraud"].sum()) for name, frame in self.windows.items()},
            "feature_names": list(self.spec.names),
            "categorical_features": list(self.spec.categorical),
            "dropped_features": self.dropped_features,
            "seed": self.config.seed,
            "genuine_share": self.config.genuine_share,
            "params": self.default.params,
            "thresholds": self.default.threshold_choice.to_dict(),
            "evaluation": self.default.evaluation,
            "targets_on_test": self.targets_on_test,
            "alert_rate_curve": self.alert_rate_curve,
            "fairness": self.fairness,
            "importance": {k: float(v) for k, v in self.importance.items()},
            "fit_seconds": self.default.fit_seconds,
        }
        if self.default.search is not None:
            result["search"] = self.default.search.summary()
        if self.default.carry_over is not None:
            result["carry_over_check"] = self.default.carry_over
        if self.baseline is not None:
            result["baseline"] = self.baseline.summary()
        if self.previous_design is not None and self.previous_split is not None:
            result["previous_design"] = {
                **self.previous_design.summary(),
                "split": self.previous_split.as_dict(),
                "feature_count": len(self.previous_design.model.feature_names_in_),
            }
        return result


def split_windows(labelled: pd.DataFrame, split: TimeSplit) -> dict[str, pd.DataFrame]:
    """The train, validation and test rows; in the refit design also the "recent" rows, the
    label-delay days before the test (scored, never learned from)."""
    windows: dict[str, pd.DataFrame] = {
        name: labelled.loc[split.mask(labelled["timestamp"], name)].reset_index(drop=True)
        for name in WINDOWS
    }
    if split.refit:
        recent = split.recent_mask(labelled["timestamp"])
        windows["recent"] = labelled.loc[recent].reset_index(drop=True)
    return windows


def _holdout(
    fitter: Fitter,
    params: dict[str, Any],
    windows: Mapping[str, pd.DataFrame],
    targets: PolicyTargets,
) -> ModelOutcome:
    """Fit on the training window, thresholds on the validation window, score both later ones."""
    started = time.perf_counter()
    model = fitter.fit(windows["train"], params)
    fit_seconds = time.perf_counter() - started
    scores = {name: fitter.scores(model, windows[name]) for name in ("validation", "test")}
    choice = choose_thresholds(scores["validation"], windows["validation"]["is_fraud"], targets)
    evaluation = {
        name: evaluate_labelled(windows[name], scores[name], choice.thresholds)
        for name in ("validation", "test")
    }
    return ModelOutcome(fitter.kind, model, scores, choice, evaluation, fit_seconds, params)


def _refit(
    fitter: Fitter,
    candidates: list[dict[str, Any]],
    windows: dict[str, pd.DataFrame],
    split: TimeSplit,
    targets: PolicyTargets,
    map_fits: MapFits = map,
) -> ModelOutcome:
    """The refit design for one kind; `windows["validation"]` becomes the folds' rows."""
    result = refit_out_of_time(
        fitter,
        windows["train"],
        windows["test"],
        split,
        candidates,
        targets,
        recent=windows.get("recent"),
        map_fits=map_fits,
    )
    validation = result.search.validation
    windows["validation"] = validation
    scores = {
        "validation": result.search.best.scores,
        "test": result.test_scores,
        "recent": result.recent_scores,
    }
    evaluation = {
        name: evaluate_labelled(windows[name], scores[name], result.choice.thresholds)
        for name in ("validation", "test")
    }
    return ModelOutcome(
        fitter.kind,
        result.model,
        scores,
        result.choice,
        evaluation,
        result.fit_seconds,
        result.params,
        result.search,
        result.carry_over,
    )


def _previous_design(
    windows: Mapping[str, pd.DataFrame], split: TimeSplit, spec: FeatureSpec, config: TrainConfig
) -> tuple[ModelOutcome, TimeSplit]:
    """The design before the refit: holdout within the same training window, the estimator's
    defaults, no card habit features, every row."""
    holdout = holdout_within(split)
    train = windows["train"]
    parts = {
        name: train.loc[holdout.mask(train["timestamp"], name)].reset_index(drop=True)
        for name in ("train", "validation")
    }
    parts["test"] = windows["test"]
    check_windows(parts)
    names = tuple(name for name in spec.names if name not in CARD_HABIT_FEATURES)
    fitter = Fitter(
        DEFAULT_KIND,
        FeatureSpec(names, spec.categorical, spec.protected),
        config.seed,
        genuine_share=1.0,
    )
    return _holdout(fitter, model_params(DEFAULT_KIND), parts, config.targets), holdout


def labelled_mask(frame: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """Rows with a label (every row of a history without pending verdicts)."""
    if "is_labelled" not in frame.columns:
        return np.ones(len(frame), dtype=bool)
    return frame["is_labelled"].to_numpy(dtype=bool)


def evaluate_labelled(
    frame: pd.DataFrame, scores: npt.NDArray[np.float64], thresholds: Any
) -> dict[str, Any]:
    """The window's metrics on its labelled rows; how many were left out, when any."""
    mask = labelled_mask(frame)
    if mask.all():
        return evaluate_window(frame, scores, thresholds)
    result = evaluate_window(frame.loc[mask], scores[mask], thresholds)
    result["unlabelled_transactions"] = int((~mask).sum())
    return result


def check_windows(windows: Mapping[str, pd.DataFrame], test_needs_fraud: bool = True) -> None:
    """Each window needs both fraud and legitimate transactions, except, with
    `test_needs_fraud` off, the test window: then it needs transactions only (it may have no
    fraud, or no label yet: it is scored, and evaluated where labels exist). ValidationError
    otherwise."""
    for name in WINDOWS:
        frame = windows[name]
        if name == "test" and not test_needs_fraud:
            if frame.empty:
                raise ValidationError(
                    "the test window has no transactions: nothing to score",
                    field="test_window",
                    rule="empty",
                )
            continue
        if frame.empty or frame["is_fraud"].nunique() < 2:
            raise ValidationError(
                f"the {name} window has {len(frame)} rows and {int(frame['is_fraud'].sum())} "
                "fraud: each window needs both fraud and legitimate transactions",
                field=f"{name}_window",
                rule="labels",
            )


def usable_features(spec: FeatureSpec, train: pd.DataFrame) -> tuple[FeatureSpec, list[str]]:
    """The spec without features that are missing on every training row.

    A history without coordinates, devices or countries (a minimal backtest file) leaves the
    features derived from them empty; they carry nothing to learn from and are left out of the
    model (and reported) rather than imputed.
    """
    empty = [name for name in spec.names if train[name].isna().all()]
    if not empty:
        return spec, []
    kept = FeatureSpec(
        names=tuple(n for n in spec.names if n not in empty),
        categorical=tuple(n for n in spec.categorical if n not in empty),
        protected=spec.protected,
    )
    return kept, empty


def train_on_split(
    labelled: pd.DataFrame,
    split: TimeSplit,
    spec: FeatureSpec,
    config: TrainConfig | None = None,
    groups: pd.DataFrame | None = None,
) -> TrainingOutcome:
    """`labelled`: context columns + features (see training.data.dataset); `groups`: fairness
    attributes aligned with `labelled`'s rows, or None to skip the audit."""
    windows = split_windows(labelled, split)
    test_groups = None
    if groups is not None:
        test_groups = groups.loc[split.mask(labelled["timestamp"], "test")]
    return train_on_windows(windows, split, spec, config, test_groups)


def train_on_windows(
    windows: dict[str, pd.DataFrame],
    split: TimeSplit,
    spec: FeatureSpec,
    config: TrainConfig | None = None,
    test_groups: pd.DataFrame | None = None,
) -> TrainingOutcome:
    """Train and evaluate on the train/validation/test windows given explicitly. `split`
    names their periods; the training window may also hold rows from outside them (retraining
    appends analysts' labels). `test_groups`: fairness attributes aligned with the test
    window's rows, or None to skip the audit."""
    from threadpoolctl import threadpool_limits

    config = config or TrainConfig()
    # Rows whose verdict is pending are never learned from (nor thresholded on); test and
    # recent rows are all scored.
    windows = {
        name: frame.loc[labelled_mask(frame)].reset_index(drop=True)
        if name in ("train", "validation")
        else frame
        for name, frame in windows.items()
    }
    check_windows(windows, config.test_needs_fraud)
    with (
        threadpool_limits(limits=config.threads, user_api="openmp"),
        ThreadPoolExecutor(max_workers=config.jobs) as pool,
    ):
        map_fits = pool.map if config.jobs > 1 else map
        return _train_on_windows(windows, split, spec, config, test_groups, map_fits)


def _train_on_windows(
    windows: dict[str, pd.DataFrame],
    split: TimeSplit,
    spec: FeatureSpec,
    config: TrainConfig,
    test_groups: pd.DataFrame | None,
    map_fits: MapFits,
) -> TrainingOutcome:
    spec, dropped = usable_features(spec, windows["train"])
    windows = dict(windows)
    fitters = {
        kind: Fitter(kind, spec, config.seed, config.genuine_share)
        for kind in (DEFAULT_KIND, BASELINE_KIND)
    }
    kinds = (DEFAULT_KIND, BASELINE_KIND) if config.with_baseline else (DEFAULT_KIND,)
    outcomes: dict[str, ModelOutcome] = {}
    for kind in kinds:
        if split.refit:
            trials = config.search_trials if kind == DEFAULT_KIND else 1
            candidates = search_candidates(trials, config.seed, config.params(kind))
            outcomes[kind] = _refit(
                fitters[kind], candidates, windows, split, config.targets, map_fits
            )
        else:
            outcomes[kind] = _holdout(fitters[kind], config.params(kind), windows, config.targets)
    default, baseline = outcomes[DEFAULT_KIND], outcomes.get(BASELINE_KIND)
    inputs = tuple(default.model.feature_names_in_)
    if inputs != spec.names:  # a feature the final model had nothing to learn from
        dropped += [name for name in spec.names if name not in inputs]
        spec = FeatureSpec(
            inputs, tuple(n for n in spec.categorical if n in inputs), spec.protected
        )
    previous = previous_split = None
    if config.previous_design and split.refit:
        try:
            previous, previous_split = _previous_design(windows, split, spec, config)
        except ValidationError:
            pass  # a window too short for the holdout design: nothing to compare with

    test = windows["test"]
    labelled = labelled_mask(test)
    fairness = None
    if test_groups is not None:
        alerted = default.scores["test"] >= default.threshold_choice.thresholds.review
        audited = test.loc[labelled].reset_index(drop=True)
        fairness = audit(
            audited["is_fraud"],
            alerted[labelled].astype(int),
            test_groups.reset_index(drop=True).loc[labelled].reset_index(drop=True),
            config.fairness_gate,
            clusters=audited["customer_id"].astype("string").to_numpy(),
        )

    coder = ReasonCoder(default.model, spec.names)
    sample = test[list(spec.names)]
    if len(sample) > IMPORTANCE_SAMPLE:
        sample = sample.sample(IMPORTANCE_SAMPLE, random_state=config.seed)
    importance = global_importance(coder, sample)

    reference_periods: dict[str, tuple[Any, pd.DataFrame]] = {
        name: (default.scores[name], windows[name]) for name in ("validation", "test")
    }
    reference = reference_distribution(
        reference_periods,
        list(importance.index[:REFERENCE_TOP_FEATURES]),
        spec.categorical,
    )
    return TrainingOutcome(
        split=split,
        spec=spec,
        config=config,
        windows=windows,
        default=default,
        baseline=baseline,
        fairness=fairness,
        importance=importance,
        reference=reference,
        targets_on_test=bank_targets(
            default.evaluation["test"],
            config.targets.decline_precision,
            config.targets.recall,
        ),
        dropped_features=dropped,
        alert_rate_curve=alert_rate_curve(
            default.scores["validation"],
            windows["validation"]["is_fraud"],
            default.scores["test"][labelled],
            test.loc[labelled],
            recent_scores=default.scores.get("recent"),
        ),
        previous_design=previous,
        previous_split=previous_split,
    )
