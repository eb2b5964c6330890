"""The model registry, read side: the MLflow store, versions at an alias, loading a version.

Training writes the registry (`training.governance`); the worker, the monitor and training's
comparisons read it through this module. The embedded SQLite store is the default. A version is
loaded only through `load_model_version`, which checks its signature, its tags and every
downloaded file (`integrity`) before it reads the model file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraud.errors import ModelNotFoundError, ServiceUnavailableError
from fraud.secrets import mask_url
from fraud.settings import Settings
from stream.scoring.compiled import MatrixModel
from stream.scoring.integrity import load_model_file, verify_files, verify_signature
from stream.scoring.policy import Thresholds
from stream.scoring.reasons import ReasonCoder

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


def open_store(settings: Settings) -> MlflowClient:
    """A client on the configured store; creates the local SQLite store on first use."""
    import mlflow
    from mlflow import MlflowClient

    # Batch jobs log to files and pipes: no download progress bars, no usage telemetry.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if settings.mlflow_tracking_uri is None:
        (settings.state_dir / "mlflow").mkdir(parents=True, exist_ok=True)
        settings.artifact_root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as exc:
        raise ServiceUnavailableError(
            f"MLflow store at {mask_url(settings.tracking_uri)} is not usable: {exc}"
        ) from exc
    return client


# --- Model registry: versions, aliases, tags, loading --------------------------------------

CHAMPION = "champion"
CHALLENGER = "challenger"
TRAINING_EXPERIMENT = "fraud-detector-training"
POLICY_ARTIFACT = "decision_policy.json"
EVALUATION_ARTIFACT = "evaluation.json"
REFERENCE_ARTIFACT = "reference_distribution.json"
TEST_WINDOW_ARTIFACT = "evaluation/test_window.parquet"


@dataclass
class LoadedModel:
    """A registered model version with what scoring needs from it."""

    model: Any
    name: str
    version: str
    alias: str | None
    thresholds: Thresholds
    feature_names: tuple[str, ...]
    categorical_features: tuple[str, ...]
    run_id: str
    tags: dict[str, str] = field(default_factory=dict)

    def reason_coder(self) -> ReasonCoder:
        return ReasonCoder(self.model, self.feature_names)

    def matrix_model(self) -> MatrixModel:
        """The model prepared for scoring and explaining float matrices (the stream's path)."""
        return MatrixModel(self.model, self.feature_names)

    def predict_scores(self, frame: Any) -> Any:
        return self.model.predict_proba(frame[list(self.feature_names)])[:, 1]


def version_at_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version `alias` points at, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def thresholds_from_tags(tags: dict[str, str]) -> Thresholds:
    try:
        return Thresholds(
            review=float(tags["policy.review_threshold"]),
            decline=float(tags["policy.decline_threshold"]),
        )
    except (KeyError, ValueError) as exc:
        raise ModelNotFoundError(
            f"model version has no usable decision thresholds in its tags ({exc}); "
            "retrain it with `make train`"
        ) from exc


def download_version(settings: Settings, name: str, version: str, folder: Path) -> Path:
    """The version's artifact folder, copied into `folder` as stored (nothing is loaded). The
    store must be open (`open_store`): the registry resolves where the files are."""
    import mlflow.artifacts
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

    source = ModelsArtifactRepository.get_underlying_uri(f"models:/{name}/{version}")
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=source, dst_path=str(folder), tracking_uri=settings.tracking_uri
    )
    return Path(local)


def load_model_version(
    settings: Settings, alias: str | None = CHAMPION, version: str | None = None
) -> LoadedModel:
    """Load `settings.model_name` at `alias` (or an explicit `version`) from the registry, once
    its signature, tags and files verify (ModelIntegrityError otherwise, before any of it is
    deserialised)."""
    client = open_store(settings)
    name = settings.model_name
    found: ModelVersion | None
    if version is not None:
        from mlflow.exceptions import MlflowException

        try:
            found = client.get_model_version(name, str(version))
        except MlflowException as exc:
            raise ModelNotFoundError(f"no version {version} of model '{name}': {exc}") from exc
    else:
        found = version_at_alias(client, name, alias or CHAMPION)
        if found is None:
            raise ModelNotFoundError(
                f"no model '{name}' at alias @{alias} in {mask_url(settings.tracking_uri)}; "
                "run `make train` to train, evaluate and promote a champion"
            )
    tags = dict(found.tags)
    manifest = verify_signature(name, tags, settings.trusted_model_keys())
    with tempfile.TemporaryDirectory(prefix="model-") as tmp:
        folder = download_version(settings, name, str(found.version), Path(tmp))
        verify_files(manifest, folder)
        model = load_model_file(folder)
    return LoadedModel(
        model=model,
        name=name,
        version=str(found.version),
        alias=alias if version is None else None,
        thresholds=thresholds_from_tags(tags),
        feature_names=tuple(json.loads(tags["model.feature_names"])),
        categorical_features=tuple(json.loads(tags.get("model.categorical_features", "[]"))),
        run_id=str(found.run_id),
        tags=tags,
    )


def download_json(client: MlflowClient, run_id: str, artifact: str) -> dict[str, Any]:
    """A JSON artifact of a run, read into a dict."""
    with tempfile.TemporaryDirectory() as folder:
        path = client.download_artifacts(run_id, artifact, folder)
        with open(path, encoding="utf-8") as handle:
            data: dict[str, Any] = json.load(handle)
    return data
