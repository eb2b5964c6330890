"""`fraud train` and `fraud backtest` end to end on a small simulated bank, private MLflow store.

Needs neither Kafka nor Redis; slow because it simulates, replays and trains for real.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support.processes import fraud_command
from tests.support.stack import ROOT

pytestmark = pytest.mark.slow

STEPS = ("simulate", "validate", "features", "train", "register", "promote", "model_card")


def run(args: list[str], state: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["FRAUD_STATE_DIR"] = str(state)  # never the user's .state store
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from simulator.history import write_history

    base = tmp_path_factory.mktemp("train")
    write_history(base / "history", customers=500, days=38, seed=11)
    run(
        fraud_command(
            "train",
            "--data",
            str(base / "history" / "transactions.parquet"),
            "--test-days",
            "7",
            "--validation-days",
            "7",
            "--warmup-days",
            "3",
            "--search-trials",
            "2",
            "--results-dir",
            str(base / "results"),
            "--model-card",
            str(base / "card.md"),
        ),
        base / "state",
    )
    return {"base": base, "state": base / "state", "history": base / "history"}


def test_train_writes_every_step_and_a_card(trained):
    results = trained["base"] / "results"
    for step in STEPS:
        data = json.loads((results / f"{step}.json").read_text())
        assert data["step"] == step
    train = json.loads((results / "train.json").read_text())
    split = train["split"]
    assert split["gap_train_validation_days"] >= 7 and split["gap_validation_test_days"] >= 7
    assert train["evaluation"]["test"]["average_precision"] > 0.3
    assert train["baseline"]["evaluation"]["test"]["average_precision"] is not None
    assert json.loads((results / "register.json").read_text())["version"] == "1"
    card = (trained["base"] / "card.md").read_text()
    assert card.startswith("# Model card: fraud-detector v1")
    assert "## Fairness (test period)" in card
    assert "## Hyper-parameter search" in card and "### Recall by alert budget" in card
    assert train["design"] == "refit" and len(train["search"]["trials"]) == 2
    assert "previous design" in card


def test_each_search_trial_is_a_nested_run_and_the_version_names_the_chosen_one(trained):
    from fraud.settings import Settings
    from stream.scoring import open_store

    settings = Settings(state_dir=trained["state"], MLFLOW_TRACKING_URI=None)
    client = open_store(settings)
    version = client.get_model_version(settings.model_name, "1")
    parent = client.get_run(version.run_id)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{version.run_id}'"
    )
    assert sorted(run.data.tags["search.trial"] for run in children) == ["1", "2"]
    chosen = [run for run in children if run.data.tags["search.chosen"] == "true"]
    assert [run.info.run_id for run in chosen] == [version.tags["search.chosen_run_id"]]
    assert version.tags["search.chosen_trial"] == chosen[0].data.tags["search.trial"]
    assert "fold1_average_precision" in chosen[0].data.metrics


def test_a_much_larger_amount_than_the_card_usually_spends_raises_the_score(trained):
    from fraud.settings import Settings
    from stream.scoring import load_model_version
    from training.data import feature_spec, labelled_features, read_history

    model = load_model_version(Settings(state_dir=trained["state"]), alias=None, version="1")
    history = read_history(trained["history"] / "transactions.parquet")
    legit = history[history["is_fraud"] == 0]
    card = legit["card_id"].value_counts().index[0]
    last = legit[legit["card_id"] == card].iloc[-1]
    mean_amount = float(legit.loc[legit["card_id"] == card, "amount"].mean())

    def score_with(amount: float) -> float:
        probe = last.copy()
        probe["transaction_id"] = "probe"
        probe["timestamp"] = history["timestamp"].max() + timedelta(hours=1)
        probe["amount"] = amount
        frame = pd.concat([history, probe.to_frame().T], ignore_index=True)
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
        frame["amount"] = frame["amount"].astype(float)
        frame["is_fraud"] = frame["is_fraud"].astype(int)
        features = labelled_features(frame, timedelta(days=7), feature_spec())
        row = features[features["transaction_id"] == "probe"]
        return float(model.predict_scores(row)[0])

    usual, large = score_with(round(mean_amount, 2)), score_with(round(20 * mean_amount, 2))
    assert large > usual, (usual, large)


def test_backtest_on_a_file_with_only_the_required_fields(trained, tmp_path):
    history = pd.read_parquet(trained["history"] / "transactions.parquet")
    minimal = history[
        [
            "transaction_id",
            "timestamp",
            "card_id",
            "customer_id",
            "terminal_id",
            "amount",
            "currency",
            "is_fraud",
        ]
    ].copy()
    minimal["timestamp"] = minimal["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    data = tmp_path / "minimal.csv"
    minimal.to_csv(data, index=False)
    out = tmp_path / "scores.csv"
    result = run(
        fraud_command(
            "backtest",
            "--data",
            str(data),
            "--train-from",
            "2026-01-04",
            "--train-to",
            "2026-01-24",
            "--test-from",
            "2026-02-01",
            "--test-to",
            "2026-02-07",
            "--label-delay-days",
            "7",
            "--search-trials",
            "1",
            "--out",
            str(out),
        ),
        tmp_path / "state",
    )
    assert "average precision" in result.stderr + result.stdout
    scores = pd.read_csv(out, dtype={"transaction_id": str})
    assert list(scores.columns) == ["transaction_id", "score"]
    in_test = history["timestamp"].between(
        pd.Timestamp("2026-02-01", tz="UTC"), pd.Timestamp("2026-02-08", tz="UTC"), inclusive="left"
    )
    assert sorted(scores["transaction_id"]) == sorted(history.loc[in_test, "transaction_id"])
    assert np.all((scores["score"] >= 0) & (scores["score"] <= 1))


def test_backtest_scores_a_window_whose_labels_are_pending(trained, tmp_path):
    history = pd.read_parquet(trained["history"] / "transactions.parquet")
    pending = history["timestamp"] >= pd.Timestamp("2026-02-04", tz="UTC")
    export = history.assign(is_fraud=history["is_fraud"].astype("Int64"))
    export.loc[pending, "is_fraud"] = pd.NA  # the bank's last days: no verdict yet
    data = tmp_path / "pending.parquet"
    export.to_parquet(data, index=False)
    out = tmp_path / "scores.csv"
    run(
        fraud_command(
            "backtest",
            *("--data", str(data)),
            *("--train-from", "2026-01-04", "--train-to", "2026-01-24"),
            *("--test-from", "2026-02-01", "--test-to", "2026-02-07"),
            *("--label-delay-days", "7", "--search-trials", "1", "--out", str(out)),
        ),
        tmp_path / "state",
    )
    scores = pd.read_csv(out, dtype={"transaction_id": str})
    in_test = history["timestamp"].between(
        pd.Timestamp("2026-02-01", tz="UTC"), pd.Timestamp("2026-02-08", tz="UTC"), inclusive="left"
    )
    assert len(scores) == int(in_test.sum())  # every transaction scored, labelled or not
    evaluation = json.loads(out.with_suffix(".json").read_text())["evaluation"]["test"]
    assert evaluation["unlabelled_transactions"] == int((in_test & pending).sum()) > 0
    assert evaluation["transactions"] == int((in_test & ~pending).sum())
    assert evaluation["fraud"] == int(history.loc[in_test & ~pending, "is_fraud"].sum())
