"""Model integrity without a registry: a signed manifest over every file and the deciding tags;
any change to a file, a tag, the manifest or the signer is refused before the model is read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import skops.io
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from fraud.errors import ModelIntegrityError
from stream.scoring import (
    KEY_ID_TAG,
    MANIFEST_TAG,
    SIGNATURE_TAG,
    build_manifest,
    file_digests,
    key_id,
    verify_files,
    verify_signature,
)
from stream.scoring.integrity import load_model_file
from tests.support.tamper import change_model_file, point_mlmodel_at_payload
from training.governance import generate_key_pair, signature_tags

NAME = "fraud-detector"
TAGS = {
    "policy.review_threshold": "0.2",
    "policy.decline_threshold": "0.8",
    "model.feature_names": '["amount", "card_tx_1h"]',
    "model.categorical_features": "[]",
    "promotion.status": "promoted",  # not a deciding tag: free to change
}


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return generate_key_pair()


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    """An artifact folder as MLflow writes it: MLmodel, environment files, the skops model."""
    folder = tmp_path / "artifact"
    folder.mkdir()
    rng = np.random.default_rng(0)
    features = rng.random((200, 2))
    model = HistGradientBoostingClassifier(max_iter=5).fit(features, features[:, 0] > 0.5)
    skops.io.dump(model, folder / "model.skops")
    (folder / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n"
        "    model_path: model.skops\n  sklearn:\n    pickled_model: model.skops\n"
        "    serialization_format: skops\n"
    )
    (folder / "requirements.txt").write_text("scikit-learn\n")
    return folder


def signed_tags(folder: Path, signing_key: str, tags: dict[str, str] = TAGS) -> dict[str, str]:
    manifest = build_manifest(NAME, file_digests(folder), tags)
    return {**tags, **signature_tags(manifest, signing_key)}


def test_a_signed_version_verifies_and_loads(artifact, keys):
    private, public = keys
    tags = signed_tags(artifact, private)
    manifest = verify_signature(NAME, tags, [public])
    assert set(manifest["files"]) == {"MLmodel", "model.skops", "requirements.txt"}
    assert manifest["tags"] == {k: v for k, v in TAGS.items() if not k.startswith("promotion")}
    assert tags[KEY_ID_TAG] == key_id(public)
    verify_files(manifest, artifact)
    model = load_model_file(artifact)
    assert model.predict_proba(np.array([[0.9, 0.1]])).shape == (1, 2)
    # Tags outside the signed set may change (promotion records, descriptions).
    verify_signature(NAME, {**tags, "promotion.status": "refused"}, [public])


def test_an_unsigned_version_is_refused(keys):
    with pytest.raises(ModelIntegrityError, match="not signed"):
        verify_signature(NAME, TAGS, [keys[1]])


def test_a_version_signed_with_a_key_not_trusted_here_is_refused(artifact, keys):
    other_private, other_public = generate_key_pair()
    tags = signed_tags(artifact, other_private)
    with pytest.raises(ModelIntegrityError, match=f"key {key_id(other_public)}"):
        verify_signature(NAME, tags, [keys[1]])
    # During a rotation both keys are trusted.
    verify_signature(NAME, tags, [keys[1], other_public])


def test_a_manifest_edited_after_signing_is_refused(artifact, keys):
    private, public = keys
    tags = signed_tags(artifact, private)
    change_model_file(artifact)
    manifest = json.loads(tags[MANIFEST_TAG])
    manifest["files"]["model.skops"] = file_digests(artifact)["model.skops"]
    forged = {**tags, MANIFEST_TAG: json.dumps(manifest, sort_keys=True, separators=(",", ":"))}
    with pytest.raises(ModelIntegrityError, match="does not verify"):
        verify_signature(NAME, forged, [public])
    garbled = {**tags, SIGNATURE_TAG: "not base64!"}
    with pytest.raises(ModelIntegrityError, match="does not verify"):
        verify_signature(NAME, garbled, [public])


@pytest.mark.parametrize("tag", ["policy.decline_threshold", "model.feature_names"])
def test_a_deciding_tag_changed_after_signing_is_refused(artifact, keys, tag):
    private, public = keys
    tags = signed_tags(artifact, private)
    with pytest.raises(ModelIntegrityError, match=f"tags changed since signing: {tag}"):
        verify_signature(NAME, {**tags, tag: "0.999"}, [public])


def test_a_manifest_for_another_model_is_refused(artifact, keys):
    private, public = keys
    tags = signed_tags(artifact, private)
    with pytest.raises(ModelIntegrityError, match="not 'other-model'"):
        verify_signature("other-model", tags, [public])


def test_changed_missing_and_added_files_are_refused(artifact, keys):
    private, public = keys
    manifest = verify_signature(NAME, signed_tags(artifact, private), [public])
    change_model_file(artifact)
    with pytest.raises(ModelIntegrityError, match=r"changed: model\.skops"):
        verify_files(manifest, artifact)

    # A payload beside a rewritten MLmodel: both show, and nothing is read.
    marker = artifact.parent / "payload-ran"
    fresh = artifact.parent / "fresh"
    fresh.mkdir()
    for path in artifact.iterdir():
        (fresh / path.name).write_bytes(path.read_bytes())
    point_mlmodel_at_payload(marker)(fresh)
    with pytest.raises(ModelIntegrityError, match=r"changed: MLmodel.*not signed: payload\.pkl"):
        verify_files(manifest, fresh)
    (fresh / "requirements.txt").unlink()
    with pytest.raises(ModelIntegrityError, match=r"missing: requirements\.txt"):
        verify_files(manifest, fresh)
    assert not marker.exists()


def test_a_symbolic_link_in_the_artifact_is_refused(artifact):
    os.symlink("/etc/hostname", artifact / "link")
    with pytest.raises(ModelIntegrityError, match="symbolic link: link"):
        file_digests(artifact)


def test_only_skops_artifacts_can_be_signed(artifact):
    (artifact / "model.skops").rename(artifact / "model.pkl")
    with pytest.raises(ModelIntegrityError, match=r"no model\.skops"):
        build_manifest(NAME, file_digests(artifact), TAGS)


def test_the_model_file_is_read_with_the_allow_list_only(tmp_path):
    """A skops file holding a function outside the allow-list (os.system) is refused by type."""
    folder = tmp_path / "artifact"
    folder.mkdir()
    skops.io.dump(make_pipeline(FunctionTransformer(os.system)), folder / "model.skops")
    with pytest.raises(ModelIntegrityError, match=r"outside the allow-list: .*system"):
        load_model_file(folder)
