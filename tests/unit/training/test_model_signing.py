"""Signed model versions in a throw-away MLflow store: training signs what it registers; a
changed model file, or an MLmodel pointing at a payload, is refused by the loader and by
`fraud promote` (even forced) before anything is deserialised; keys rotate with `fraud sign`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import SecretStr
from sklearn.ensemble import HistGradientBoostingClassifier

from fraud.cli import run
from fraud.errors import ConfigError, ModelIntegrityError
from fraud.secrets import DEV_MODEL_PUBLIC_KEY
from fraud.settings import Settings
from stream.scoring import (
    CHAMPION,
    MANIFEST_TAG,
    SKOPS_TRUSTED_TYPES,
    load_model_version,
    open_store,
    version_at_alias,
)
from tests.support.tamper import change_model_file, point_mlmodel_at_payload
from training.governance import generate_key_pair, promote, resign_version, sign_version

pytestmark = pytest.mark.slow

FEATURES = ["amount", "card_tx_1h"]


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return Settings(state_dir=tmp_path_factory.mktemp("state"), mlflow_tracking_uri=None)


def register(settings: Settings, sign: bool = True) -> str:
    """A small model registered as training does: skops file, deciding tags, signature."""
    import mlflow
    import mlflow.sklearn

    from training.governance import ensure_experiment, set_version_tags

    client = open_store(settings)
    experiment = ensure_experiment(client, "signing-tests", settings)
    rng = np.random.default_rng(1)
    features = pd.DataFrame(rng.random((300, 2)), columns=FEATURES)
    model = HistGradientBoostingClassifier(max_iter=5).fit(features, features["amount"] > 0.7)
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=settings.model_name,
            serialization_format="skops",
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
        )
    version = str(info.registered_model_version)
    tags = {
        "policy.review_threshold": "0.3",
        "policy.decline_threshold": "0.9",
        "model.feature_names": '["amount", "card_tx_1h"]',
        "model.categorical_features": "[]",
        "gate.data_validation": "passed",
        "gate.fairness": "passed",
    }
    set_version_tags(client, settings.model_name, version, tags)
    if sign:
        sign_version(settings, client, settings.model_name, version)
    return version


@pytest.fixture(scope="module")
def champion(settings: Settings) -> str:
    version = register(settings)
    open_store(settings).set_registered_model_alias(settings.model_name, CHAMPION, version)
    return version


def champion_now(settings: Settings) -> str:
    found = version_at_alias(open_store(settings), settings.model_name, CHAMPION)
    assert found is not None
    return str(found.version)


def test_a_signed_version_loads_through_the_verified_path(settings, champion):
    loaded = load_model_version(settings, alias=CHAMPION)
    assert loaded.version == champion
    scores = loaded.predict_scores(pd.DataFrame([[0.9, 0.1], [0.1, 0.9]], columns=FEATURES))
    assert scores[0] > scores[1]
    tags = open_store(settings).get_model_version(settings.model_name, champion).tags
    assert '"model.skops"' in tags[MANIFEST_TAG] and '"MLmodel"' in tags[MANIFEST_TAG]


def test_a_changed_model_file_is_refused_by_the_loader_and_by_promote(settings, champion):
    from tests.support.tamper import publish_tampered_copy

    tampered = publish_tampered_copy(settings, champion, change_model_file)
    with pytest.raises(ModelIntegrityError, match=r"changed: model\.skops"):
        load_model_version(settings, version=tampered)
    with pytest.raises(ModelIntegrityError, match=f"refusing to promote .* v{tampered}"):
        promote(settings, tampered, force=True, reason="an operator in a hurry")
    assert champion_now(settings) == champion


def test_an_mlmodel_pointing_at_a_payload_never_runs_it(settings, champion, tmp_path, capsys):
    from tests.support.tamper import publish_tampered_copy

    marker = tmp_path / "payload-ran"
    tampered = publish_tampered_copy(settings, champion, point_mlmodel_at_payload(marker))
    with pytest.raises(ModelIntegrityError, match=r"changed: MLmodel.*not signed: payload\.pkl"):
        load_model_version(settings, version=tampered)
    # `fraud promote --force` refuses too, with one line naming the version; exit code 2.
    with pytest.raises(SystemExit) as exit_info:
        run(["promote", "--version", tampered, "--force", "--reason", "rollback"])
    assert exit_info.value.code == 2
    assert f"refusing to promote fraud-detector v{tampered}" in capsys.readouterr().err
    assert not marker.exists(), "the payload ran"
    assert champion_now(settings) == champion

    # Control: the payload is live. The loader the worker used before (MLflow's, which obeys
    # the artifact's MLmodel) runs it.
    import mlflow.sklearn

    mlflow.sklearn.load_model(f"models:/{settings.model_name}/{tampered}")
    assert marker.read_text() == "payload ran"


@pytest.fixture
def cli_env(settings, monkeypatch):
    monkeypatch.setenv("FRAUD_STATE_DIR", str(settings.state_dir))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.tracking_uri)


def test_an_unsigned_version_is_refused_until_adopted(settings, champion, cli_env, capsys):
    unsigned = register(settings, sign=False)
    with pytest.raises(ModelIntegrityError, match="not signed"):
        load_model_version(settings, version=unsigned)
    with pytest.raises(ModelIntegrityError, match="not signed"):
        promote(settings, unsigned)
    with pytest.raises(ModelIntegrityError, match="--adopt"):
        resign_version(settings, open_store(settings), settings.model_name, unsigned)
    with pytest.raises(SystemExit) as exit_info:
        run(["sign", "--version", unsigned, "--adopt"])
    assert exit_info.value.code == 0, capsys.readouterr().err
    assert load_model_version(settings, version=unsigned).version == unsigned
    tags = open_store(settings).get_model_version(settings.model_name, unsigned).tags
    assert "integrity.adopted" in tags


def test_keys_rotate_and_a_rotation_never_blesses_a_changed_artifact(settings, champion):
    from tests.support.tamper import publish_tampered_copy

    new_private, new_public = generate_key_pair()
    rotating = settings.model_copy(
        update={
            "model_signing_key": SecretStr(new_private),
            "model_trusted_keys": f"{DEV_MODEL_PUBLIC_KEY},{new_public}",
        }
    )
    after = settings.model_copy(update={"model_trusted_keys": new_public})
    client = open_store(settings)
    with pytest.raises(ModelIntegrityError, match="not trusted here"):
        load_model_version(after, version=champion)
    resign_version(rotating, client, settings.model_name, champion)
    assert load_model_version(after, version=champion).version == champion

    tampered = publish_tampered_copy(settings, champion, change_model_file)
    with pytest.raises(ModelIntegrityError, match=r"changed: model\.skops"):
        resign_version(rotating, client, settings.model_name, tampered)
    with pytest.raises(ModelIntegrityError):
        load_model_version(after, version=tampered)


def test_training_without_a_signing_key_is_refused_in_production(tmp_path):
    production = Settings(
        env="production",
        state_dir=tmp_path,
        mlflow_tracking_uri=None,
        model_trusted_keys=generate_key_pair()[1],
    )
    with pytest.raises(ConfigError, match="FRAUD_MODEL_SIGNING_KEY is unset"):
        sign_version(production, None, "fraud-detector", "1")
