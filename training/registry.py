"""MLflow tracking store and model registry access (embedded SQLite store by default)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fraud.errors import ServiceUnavailableError
from fraud.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient


def open_store(settings: Settings) -> MlflowClient:
    """A client on the configured store; creates the local SQLite store on first use."""
    import mlflow
    from mlflow import MlflowClient

    if settings.mlflow_tracking_uri is None:
        (settings.state_dir / "mlflow").mkdir(parents=True, exist_ok=True)
        settings.artifact_root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as exc:
        raise ServiceUnavailableError(
            f"MLflow store at {settings.tracking_uri} is not usable: {exc}"
        ) from exc
    return client


def ensure_experiment(client: MlflowClient, name: str, settings: Settings) -> str:
    """The experiment id for `name`, created with artifacts under the state folder if new."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = None
    if settings.mlflow_tracking_uri is None:
        location = settings.artifact_root.as_uri()
    return str(client.create_experiment(name, artifact_location=location))
