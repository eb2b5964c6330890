"""The model runtime: a registered version, verified and loaded, as a `ScoringModel`.

The worker, `POST /predict` and the benchmark load models only through `load_from_registry`:
it refuses a version whose features the stream does not compute, builds the compiled trees and
reason-code tables, and scores one row so that first-call costs are paid at load time.
"""

from __future__ import annotations

from fraud.errors import ModelNotFoundError
from fraud.settings import Settings
from stream.features import FEATURE_NAMES
from stream.scoring.batch import ScoringModel
from stream.scoring.registry import load_model_version, open_store, version_at_alias


def load_from_registry(settings: Settings, alias: str) -> ScoringModel:
    """Load the version at `alias` from the MLflow registry as a ScoringModel."""
    loaded = load_model_version(settings, alias=alias)
    check_features(loaded.name, loaded.version, loaded.feature_names)
    compiled = loaded.matrix_model()
    model = ScoringModel(
        name=loaded.name,
        version=loaded.version,
        alias=alias,
        thresholds=loaded.thresholds,
        feature_names=loaded.feature_names,
        predict_proba=compiled.predict_proba,
        explain=compiled.reason_codes,
    )
    warm_up(model)
    return model


def check_features(name: str, version: str, feature_names: tuple[str, ...]) -> None:
    """Refuse a model that needs features the stream does not compute: scoring would quietly
    feed it missing values (a model trained before a feature was renamed or removed)."""
    unknown = [feature for feature in feature_names if feature not in FEATURE_NAMES]
    if unknown:
        raise ModelNotFoundError(
            f"{name} version {version} needs features the stream does not compute: "
            f"{', '.join(unknown)}; retrain it with `make train` on the current feature code"
        )


def warm_up(model: ScoringModel) -> None:
    """Score and explain one row now, so that one-off costs of a first call (compiling the
    TreeSHAP kernels took seconds) are paid while loading, not by a batch on the hot path."""
    matrix = model.matrix([{}])
    model.predict_proba(matrix)
    model.explain(matrix)


def alias_version(settings: Settings, alias: str) -> str | None:
    """The version number the alias points at now, or None when it points nowhere."""
    found = version_at_alias(open_store(settings), settings.model_name, alias)
    return None if found is None else str(found.version)
