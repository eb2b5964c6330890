"""Point-in-time training sets: history replayed through the stream's own feature code.

`training.data.replay.replay_features` walks the history in time order through `stream.features.definition`
(the code the scorer runs), so a training row carries exactly the features the scorer would
have computed at that moment, with labels visible only after the label delay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pandas as pd

from fraud.errors import ValidationError

# Columns carried beside the features: for splitting, evaluation and the fairness join; never
# model inputs.
CONTEXT_COLUMNS = ("transaction_id", "timestamp", "card_id", "customer_id", "is_fraud")


@dataclass(frozen=True)
class FeatureSpec:
    names: tuple[str, ...]
    categorical: tuple[str, ...]
    protected: tuple[str, ...]


def feature_spec() -> FeatureSpec:
    """The model inputs as the stream defines them."""
    from stream.features import definition as features

    return FeatureSpec(
        names=tuple(features.FEATURE_NAMES),
        categorical=tuple(features.CATEGORICAL_FEATURES),
        protected=tuple(getattr(features, "PROTECTED_ATTRIBUTES", ())),
    )


def labelled_features(
    history: pd.DataFrame, label_delay: timedelta, spec: FeatureSpec
) -> pd.DataFrame:
    """Context columns + features, one row per history row, in the history's (time) order."""
    from training.data.replay import replay_features

    leaked = set(spec.protected) & set(spec.names)
    if leaked:
        raise ValidationError(
            f"protected attributes must not be model inputs: {sorted(leaked)}", rule="protected"
        )
    features = replay_features(history, label_delay)
    return join_features(history, features, spec)


def join_features(history: pd.DataFrame, features: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    context = [
        c for c in (*CONTEXT_COLUMNS, "is_labelled", "fraud_scenario") if c in history.columns
    ]
    left = history[context].reset_index(drop=True)
    right = features.reset_index(drop=True)
    same_order = len(left) == len(right) and bool(
        (left["transaction_id"].astype("string") == right["transaction_id"].astype("string")).all()
    )
    if not same_order:
        right = right.set_index(right["transaction_id"].astype("string")).reindex(
            left["transaction_id"].astype("string")
        )
        missing = int(right[list(spec.names)].isna().all(axis=1).sum())
        if missing:
            raise ValidationError(
                f"feature replay returned no row for {missing} transactions", rule="replay"
            )
        right = right.reset_index(drop=True)
    result = pd.concat([left, right[list(spec.names)].astype(float)], axis=1)
    return result
