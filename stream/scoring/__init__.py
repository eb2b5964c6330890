"""From feature vectors to decisions, and the model runtime behind them.

    model = load_from_registry(settings, "champion")     # a verified ScoringModel
    scored = score_batch(model, events, feature_rows, degraded, now, arrived)

`policy` turns scores into tiers with the thresholds stored on the model version; `batch` scores
a micro-batch with one call; `registry` reads the MLflow registry; `integrity` checks a
version's signed manifest and files before its model file is read; `runtime` loads a version as
a `ScoringModel`; `compiled` walks the trees in compiled code; `reasons` and `treeshap` give the
reason codes of flagged transactions.
"""

from stream.scoring import treeshap
from stream.scoring.batch import ScoredBatch, ScoringModel, score_batch
from stream.scoring.compiled import MatrixModel
from stream.scoring.integrity import (
    KEY_ID_TAG,
    MANIFEST_TAG,
    MODEL_FILE,
    SIGNATURE_TAG,
    SKOPS_TRUSTED_TYPES,
    build_manifest,
    canonical,
    file_digests,
    key_id,
    verify_files,
    verify_signature,
)
from stream.scoring.policy import ALERT_TIERS, TIERS, Thresholds, Tier, decide, decide_many
from stream.scoring.reasons import ReasonCoder
from stream.scoring.registry import (
    CHALLENGER,
    CHAMPION,
    EVALUATION_ARTIFACT,
    POLICY_ARTIFACT,
    REFERENCE_ARTIFACT,
    TEST_WINDOW_ARTIFACT,
    TRAINING_EXPERIMENT,
    LoadedModel,
    download_json,
    download_version,
    load_model_version,
    open_store,
    thresholds_from_tags,
    version_at_alias,
)
from stream.scoring.runtime import alias_version, check_features, load_from_registry, warm_up

__all__ = [
    "ALERT_TIERS",
    "CHALLENGER",
    "CHAMPION",
    "EVALUATION_ARTIFACT",
    "KEY_ID_TAG",
    "MANIFEST_TAG",
    "MODEL_FILE",
    "POLICY_ARTIFACT",
    "REFERENCE_ARTIFACT",
    "SIGNATURE_TAG",
    "SKOPS_TRUSTED_TYPES",
    "TEST_WINDOW_ARTIFACT",
    "TIERS",
    "TRAINING_EXPERIMENT",
    "LoadedModel",
    "MatrixModel",
    "ReasonCoder",
    "ScoredBatch",
    "ScoringModel",
    "Thresholds",
    "Tier",
    "alias_version",
    "build_manifest",
    "canonical",
    "check_features",
    "decide",
    "decide_many",
    "download_json",
    "download_version",
    "file_digests",
    "key_id",
    "load_from_registry",
    "load_model_version",
    "open_store",
    "score_batch",
    "thresholds_from_tags",
    "treeshap",
    "verify_files",
    "verify_signature",
    "version_at_alias",
    "warm_up",
]
