"""What someone with write access to the registry and its artifact store could do: publish a
copy of a signed version with changed files (and the original's tags, signature included)."""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

from fraud.settings import Settings


class FileWriter:
    """Unpickling this runs `open(marker, "w").write(...)`: a stand-in for any payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('payload ran')",))


def payload_bytes(marker: Path) -> bytes:
    return pickle.dumps(FileWriter(marker))


def point_mlmodel_at_payload(marker: Path) -> Callable[[Path], None]:
    """A change that adds a pickle payload and makes the artifact's MLmodel name it as a
    cloudpickle model: what `mlflow.sklearn.load_model` obeys."""

    def change(folder: Path) -> None:
        (folder / "payload.pkl").write_bytes(payload_bytes(marker))
        mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
        mlmodel["flavors"]["sklearn"]["serialization_format"] = "cloudpickle"
        mlmodel["flavors"]["sklearn"]["pickled_model"] = "payload.pkl"
        mlmodel["flavors"]["python_function"]["model_path"] = "payload.pkl"
        (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))

    return change


def change_model_file(folder: Path) -> None:
    """Flip one byte of the model file (a skops zip: the change stays readable or not, either
    way the digest differs)."""
    path = folder / "model.skops"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def publish_tampered_copy(
    settings: Settings,
    version: str,
    change: Callable[[Path], None],
    tags: dict[str, str] | None = None,
) -> str:
    """A new version of the model whose files are `version`'s after `change`, with `version`'s
    tags (signature included, `tags` on top); returns its number. The alias does not move."""
    from stream.scoring import download_version, open_store

    client = open_store(settings)
    name = settings.model_name
    original = client.get_model_version(name, version)
    with tempfile.TemporaryDirectory() as tmp:
        folder = download_version(settings, name, version, Path(tmp))
        change(folder)
        experiment = client.get_run(original.run_id).info.experiment_id
        logged = client.create_logged_model(
            experiment_id=experiment, name="model", source_run_id=original.run_id
        )
        client.log_model_artifacts(logged.model_id, str(folder))
    copied = {k: v for k, v in original.tags.items() if not k.startswith("promotion.")}
    created = client.create_model_version(
        name,
        f"models:/{logged.model_id}",
        run_id=original.run_id,
        tags={**copied, **(tags or {})},
        model_id=logged.model_id,
    )
    return str(created.version)
