"""The model: estimators (gradient boosting, the RandomForest baseline), training on a time
split with thresholds chosen on the validation period, and the thresholds rule itself."""

from training.model.estimators import (
    BASELINE_KIND,
    DEFAULT_KIND,
    build_model,
    fit_model,
    fraud_scores,
    model_params,
)
from training.model.pipeline import (
    ModelOutcome,
    TrainConfig,
    TrainingOutcome,
    check_windows,
    split_windows,
    train_on_split,
    train_on_windows,
)
from training.model.thresholds import (
    PolicyTargets,
    ThresholdChoice,
    choose_thresholds,
    precision_lower_bound,
)

__all__ = [
    "BASELINE_KIND",
    "DEFAULT_KIND",
    "ModelOutcome",
    "PolicyTargets",
    "ThresholdChoice",
    "TrainConfig",
    "TrainingOutcome",
    "build_model",
    "check_windows",
    "choose_thresholds",
    "fit_model",
    "fraud_scores",
    "model_params",
    "precision_lower_bound",
    "split_windows",
    "train_on_split",
    "train_on_windows",
]
