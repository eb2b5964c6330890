"""Train, choose thresholds, evaluate, audit and explain on one time split (no I/O).

`fraud train` and `fraud backtest` both call `train_on_split`; MLflow logging, files and the
console are the callers' business, so the same data and seed always give the same outcome.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from fraud.errors import ValidationError
from stream.scoring import ReasonCoder
from training.data import WINDOWS, FeatureSpec, TimeSplit
from training.evaluation import (
    FairnessGate,
    audit,
    bank_targets,
    evaluate_window,
    global_importance,
    reference_distribution,
)
from training.model.estimators import BASELINE_KIND, DEFAULT_KIND, fit_model, fraud_scores
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


@dataclass
class ModelOutcome:
    kind: str
    model: Any
    scores: dict[str, npt.NDArray[np.float64]]  # window -> scores
    threshold_choice: ThresholdChoice
    evaluation: dict[str, dict[str, Any]]  # window ("validation", "test") -> metrics
    fit_seconds: float


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

    def summary(self) -> dict[str, Any]:
        """Everything a report or the registry needs, as plain JSON-able data."""
        result: dict[str, Any] = {
            "split": self.split.as_dict(),
            "rows": {name: len(frame) for name, frame in self.windows.items()},
            "fraud": {name: int(frame["is_fraud"].sum()) for name, frame in self.windows.items()},
            "feature_names": list(self.spec.names),
            "categorical_features": list(self.spec.categorical),
            "dropped_features": self.dropped_features,
            "seed": self.config.seed,
            "thresholds": self.default.threshold_choice.to_dict(),
            "evaluation": self.default.evaluation,
            "targets_on_test": self.targets_on_test,
            "fairness": self.fairness,
            "importance": {k: float(v) for k, v in self.importance.items()},
            "fit_seconds": self.default.fit_seconds,
        }
        if self.baseline is not None:
            result["baseline"] = {
                "kind": self.baseline.kind,
                "thresholds": self.baseline.threshold_choice.to_dict(),
                "evaluation": self.baseline.evaluation,
                "fit_seconds": self.baseline.fit_seconds,
            }
        return result


def split_windows(labelled: pd.DataFrame, split: TimeSplit) -> dict[str, pd.DataFrame]:
    return {
        name: labelled.loc[split.mask(labelled["timestamp"], name)].reset_index(drop=True)
        for name in WINDOWS
    }


def _fit_and_evaluate(
    kind: Any, windows: dict[str, pd.DataFrame], spec: FeatureSpec, config: TrainConfig
) -> ModelOutcome:
    names = list(spec.names)
    train = windows["train"]
    started = time.perf_counter()
    model = fit_model(
        kind,
        train[names],
        train["is_fraud"],
        spec.categorical,
        config.seed,
        config.overrides.get(kind),
    )
    fit_seconds = time.perf_counter() - started
    scores = {name: fraud_scores(model, windows[name][names]) for name in ("validation", "test")}
    choice = choose_thresholds(
        scores["validation"], windows["validation"]["is_fraud"], config.targets
    )
    evaluation = {
        name: evaluate_window(windows[name], scores[name], choice.thresholds)
        for name in ("validation", "test")
    }
    return ModelOutcome(kind, model, scores, choice, evaluation, fit_seconds)


def check_windows(windows: Mapping[str, pd.DataFrame]) -> None:
    """Each window needs both fraud and legitimate transactions (ValidationError otherwise)."""
    for name in WINDOWS:
        frame = windows[name]
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
    check_windows(windows)
    with threadpool_limits(limits=config.threads, user_api="openmp"):
        return _train_on_windows(windows, split, spec, config, test_groups)


def _train_on_windows(
    windows: dict[str, pd.DataFrame],
    split: TimeSplit,
    spec: FeatureSpec,
    config: TrainConfig,
    test_groups: pd.DataFrame | None,
) -> TrainingOutcome:
    spec, dropped = usable_features(spec, windows["train"])
    default = _fit_and_evaluate(DEFAULT_KIND, windows, spec, config)
    baseline = (
        _fit_and_evaluate(BASELINE_KIND, windows, spec, config) if config.with_baseline else None
    )

    test = windows["test"]
    fairness = None
    if test_groups is not None:
        alerted = default.scores["test"] >= default.threshold_choice.thresholds.review
        fairness = audit(
            test["is_fraud"],
            alerted.astype(int),
            test_groups.reset_index(drop=True),
            config.fairness_gate,
            clusters=test["customer_id"].astype("string").to_numpy(),
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
    )
