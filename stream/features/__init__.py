"""The one feature definition, shared by the stream and training, and the stores that keep its
state.

    store = RedisFeatureStore(
        connect_redis(settings),                 # stream.redis_io: URL + Redis user
        settings.redis_prefix,
        label_delay=timedelta(days=settings.label_delay_days),  # the model's training delay
    )
    features = store.process_batch(events)   # one dict per event, FEATURE_NAMES keys
    store.apply_labels(feedback)             # analyst labels -> terminal fraud rates
    store.default_matrix(events)             # no history: degraded mode when Redis is down

`definition` names the features and computes them with the compiled `kernels` over the columns
`encoding` builds; `metadata` says what each feature measures, in words (`feature_info`);
`store` holds the batch logic both stores share (`memory_store`,
`redis_store`); `warm` loads a store from the history before live traffic starts.
"""

from stream.features import definition
from stream.features.definition import (
    CARD_FEATURES,
    CARD_HABIT_FEATURES,
    CATEGORICAL_FEATURES,
    EVENT_FEATURES,
    FEATURE_NAMES,
    PROTECTED_ATTRIBUTES,
    TERMINAL_FEATURES,
    TERMINAL_WINDOWS,
    CardSequence,
    canonical_card_state,
    card_features_grouped,
    event_features,
    features_without_history,
    merged_card_rows,
    terminal_features_grouped,
    vector_without_history,
)
from stream.features.encoding import (
    CARD_EVENT_DTYPE,
    UNKNOWN_CODE,
    EventColumns,
    FloatArray,
    IntArray,
    channel_code,
    merchant_category_group_code,
    string_key,
    timestamp_us,
)
from stream.features.kernels import EARTH_RADIUS_KM, MAX_CARD_HISTORY
from stream.features.memory_store import InMemoryFeatureStore, default_features
from stream.features.metadata import Baseline, FeatureInfo, feature_info
from stream.features.redis_store import SHARDS as REDIS_SHARDS
from stream.features.redis_store import RedisFeatureStore
from stream.features.store import (
    DEFAULT_LABEL_DELAY,
    BatchFeatures,
    FeatureStore,
    LabelResult,
    StaleStateError,
    state_ttl,
)
from stream.features.warm import (
    WarmReport,
    history_events,
    history_labels,
    load_events,
    warm_store,
)

__all__ = [
    "CARD_EVENT_DTYPE",
    "CARD_FEATURES",
    "CARD_HABIT_FEATURES",
    "CATEGORICAL_FEATURES",
    "DEFAULT_LABEL_DELAY",
    "EARTH_RADIUS_KM",
    "EVENT_FEATURES",
    "FEATURE_NAMES",
    "MAX_CARD_HISTORY",
    "PROTECTED_ATTRIBUTES",
    "REDIS_SHARDS",
    "TERMINAL_FEATURES",
    "TERMINAL_WINDOWS",
    "UNKNOWN_CODE",
    "Baseline",
    "BatchFeatures",
    "CardSequence",
    "EventColumns",
    "FeatureInfo",
    "FeatureStore",
    "FloatArray",
    "InMemoryFeatureStore",
    "IntArray",
    "LabelResult",
    "RedisFeatureStore",
    "StaleStateError",
    "WarmReport",
    "canonical_card_state",
    "card_features_grouped",
    "channel_code",
    "default_features",
    "definition",
    "event_features",
    "feature_info",
    "features_without_history",
    "history_events",
    "history_labels",
    "load_events",
    "merchant_category_group_code",
    "merged_card_rows",
    "state_ttl",
    "string_key",
    "terminal_features_grouped",
    "timestamp_us",
    "vector_without_history",
    "warm_store",
]
