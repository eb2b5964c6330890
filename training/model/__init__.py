"""The model: estimators (gradient boosting, the RandomForest baseline), training on a time
split (the refit design: search and thresholds out of time on rolling-origin folds, then a refit
on every labelled day; or the holdout design), and the thresholds rule itself."""

from training.model.estimators import (
    BASELINE_KIND,
    DEFAULT_KIND,
    build_model,
    fit_model,
    fraud_scores,
    genuine_sample,
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
from training.model.refit import Fitter, RefitResult, carry_over_check, refit_out_of_time
from training.model.search import (
    SEARCH_SPACE,
    FoldFrames,
    FoldResult,
    FoldScores,
    MapFits,
    OutOfTime,
    Trial,
    fold_frames,
    out_of_time_search,
    search_candidates,
)
from training.model.thresholds import (
    PolicyTargets,
    ThresholdChoice,
    cap_on_recent,
    choose_thresholds,
    precision_lower_bound,
)

__all__ = [
    "BASELINE_KIND",
    "DEFAULT_KIND",
    "SEARCH_SPACE",
    "Fitter",
    "FoldFrames",
    "FoldResult",
    "FoldScores",
    "MapFits",
    "ModelOutcome",
    "OutOfTime",
    "PolicyTargets",
    "RefitResult",
    "ThresholdChoice",
    "TrainConfig",
    "TrainingOutcome",
    "Trial",
    "build_model",
    "cap_on_recent",
    "carry_over_check",
    "check_windows",
    "choose_thresholds",
    "fit_model",
    "fold_frames",
    "fraud_scores",
    "genuine_sample",
    "model_params",
    "out_of_time_search",
    "precision_lower_bound",
    "refit_out_of_time",
    "search_candidates",
    "split_windows",
    "train_on_split",
    "train_on_windows",
]
