"""The model registry, write side: experiments and version tags (reads: `stream.scoring`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fraud.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient


def ensure_experiment(client: MlflowClient, name: str, settings: Settings) -> str:
    """The experiment id for `name`, created with artifacts under the state folder if new."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = None
    if settings.mlflow_tracking_uri is None:
        location = settings.artifact_root.as_uri()
    return str(client.create_experiment(name, artifact_location=location))


def set_version_tags(client: MlflowClient, name: str, version: str, tags: dict[str, Any]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))
