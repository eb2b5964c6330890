"""Registry, loader and promotion gates against a throw-away MLflow store in tmp_path."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from fraud.errors import ConfigError, ModelNotFoundError
from fraud.settings import Settings
from stream.scoring import CHALLENGER, CHAMPION, load_model_version, open_store, version_at_alias
from tests.unit.training.test_training_helpers import SPEC, synthetic_customers, synthetic_labelled
from training.data import default_split
from training.evaluation import FairnessGate, attach_groups
from training.governance import DataInfo, log_training_run, promote, render
from training.model import TrainConfig, train_on_split

pytestmark = pytest.mark.slow

# The fairness gate is exercised in test_fairness_audit; here any two judged groups pass it.
CONFIG = TrainConfig(
    seed=2,
    with_baseline=False,
    overrides={"hist_gradient_boosting": {"max_iter": 60}},
    fairness_gate=FairnessGate(min_ratio=0.0, max_ratio=float("inf"), min_expected_events=1),
)


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    # Explicit None: never the user's store, whatever MLFLOW_TRACKING_URI says.
    return Settings(state_dir=tmp_path_factory.mktemp("state"), mlflow_tracking_uri=None)


@pytest.fixture(scope="module")
def data():
    labelled = synthetic_labelled(days=40, per_day=300, seed=4)
    split = default_split(
        labelled["timestamp"], timedelta(days=7), validation_days=9, warmup_days=1
    )
    groups = attach_groups(labelled, synthetic_customers(), split.test_from)
    return labelled, split, groups


def register(settings, outcome, validation_passed=True):
    info = DataInfo("synthetic.parquet", "0" * 64, 1, {"passed": validation_passed})
    return log_training_run(settings, outcome, info).version


def worse_outcome(data):
    labelled, split, groups = data
    shuffled = labelled.copy()
    train = split.mask(shuffled["timestamp"], "train")
    rng = np.random.default_rng(0)
    shuffled.loc[train, "is_fraud"] = rng.permutation(shuffled.loc[train, "is_fraud"].to_numpy())
    return train_on_split(shuffled, split, SPEC, CONFIG, groups)


def test_registry_lifecycle(settings, data):
    labelled, split, groups = data
    with pytest.raises(ModelNotFoundError, match="make train"):
        load_model_version(settings)

    good = train_on_split(labelled, split, SPEC, CONFIG, groups)
    v1 = register(settings, good)
    client = open_store(settings)
    assert str(version_at_alias(client, settings.model_name, CHALLENGER).version) == v1
    first = promote(settings)
    assert first.promoted and not first.forced and first.champion_after == v1

    loaded = load_model_version(settings, alias=CHAMPION)
    assert loaded.version == v1
    assert loaded.thresholds == good.default.threshold_choice.thresholds
    assert loaded.feature_names == SPEC.names
    assert loaded.categorical_features == SPEC.categorical
    test = good.windows["test"]
    np.testing.assert_allclose(loaded.predict_scores(test), good.default.scores["test"])
    codes = loaded.reason_coder().reason_codes(test[list(SPEC.names)].head(4))
    assert len(codes) == 4 and all(item["feature"] in SPEC.names for row in codes for item in row)

    # A worse challenger is refused and the champion stays where it was.
    v2 = register(settings, worse_outcome(data))
    refused = promote(settings, v2)
    assert not refused.promoted
    gate = {g.name: g for g in refused.gates}["not_worse"]
    assert not gate.passed
    assert (
        refused.comparison["candidate_average_precision"]
        < refused.comparison["champion_average_precision"]
    )
    assert str(version_at_alias(client, settings.model_name, CHAMPION).version) == v1
    assert client.get_model_version(settings.model_name, v2).tags["promotion.status"] == "refused"

    # Forcing needs a reason, and the reason is recorded on the version.
    with pytest.raises(ConfigError, match="reason"):
        promote(settings, v2, force=True)
    forced = promote(settings, v2, force=True, reason="incident 42: roll forward for test")
    assert forced.forced and forced.promoted
    tags = client.get_model_version(settings.model_name, v2).tags
    assert tags["promotion.status"] == "forced"
    assert tags["promotion.reason"] == "incident 42: roll forward for test"
    assert tags["promotion.previous_champion"] == v1
    assert str(version_at_alias(client, settings.model_name, CHAMPION).version) == v2

    card = render(settings)
    assert f"v{v2}" in card and "forced" in card and "incident 42" in card
    assert "## Fairness (test period)" in card and "### Recall per fraud scenario" in card


def test_failed_data_validation_blocks_promotion(settings, data):
    labelled, split, groups = data
    champion_before = version_at_alias(open_store(settings), settings.model_name, CHAMPION)
    outcome = train_on_split(labelled, split, SPEC, CONFIG, groups)
    version = register(settings, outcome, validation_passed=False)
    decision = promote(settings, version)
    gates = {g.name: g.passed for g in decision.gates}
    assert gates["data_validation"] is False
    assert not decision.promoted
    champion_after = version_at_alias(open_store(settings), settings.model_name, CHAMPION)
    assert (champion_before and champion_before.version) == (
        champion_after and champion_after.version
    )
