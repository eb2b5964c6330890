"""History in, training sets out: reading and validating history files, the time split, and
point-in-time features replayed through the stream's own feature definition."""

from training.data.dataset import (
    CONTEXT_COLUMNS,
    FeatureSpec,
    feature_spec,
    join_features,
    labelled_features,
)
from training.data.history import (
    check_readable,
    customers_path_for,
    parse_timestamps,
    read_customers,
    read_history,
)
from training.data.replay import replay_features
from training.data.split import (
    DAY,
    WINDOWS,
    Fold,
    TimeSplit,
    backtest_split,
    default_split,
    holdout_within,
    rolling_folds,
)
from training.data.validation import (
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    Problem,
    ValidatedHistory,
    ValidationReport,
    validate_customers,
    validate_history,
)

__all__ = [
    "CONTEXT_COLUMNS",
    "DAY",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "WINDOWS",
    "FeatureSpec",
    "Fold",
    "Problem",
    "TimeSplit",
    "ValidatedHistory",
    "ValidationReport",
    "backtest_split",
    "check_readable",
    "customers_path_for",
    "default_split",
    "feature_spec",
    "holdout_within",
    "join_features",
    "labelled_features",
    "parse_timestamps",
    "read_customers",
    "read_history",
    "replay_features",
    "rolling_folds",
    "validate_customers",
    "validate_history",
]
