"""Recording a training run in MLflow and registering its model as `@challenger`.

One run holds everything a reviewer needs to trust or reproduce the model: parameters, the
time split, metrics of the default model and the baseline, the datasets (source + digest), the
code version, the environment, plots, the fairness audit, the data-validation report, the
decision policy and the drift reference. Each trial of the hyper-parameter search is a nested
run under it (its parameters, and its average precision on every fold), and the version records
which trial was chosen. The registered version carries the thresholds and the gate results as
tags, so the scorer and the promotion gate need nothing else.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import tempfile
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from fraud.settings import PROJECT_ROOT, Settings
from stream.scoring import (
    CHALLENGER,
    EVALUATION_ARTIFACT,
    POLICY_ARTIFACT,
    REFERENCE_ARTIFACT,
    SKOPS_TRUSTED_TYPES,
    TEST_WINDOW_ARTIFACT,
    TRAINING_EXPERIMENT,
    open_store,
)
from training.evaluation import flat_metrics, plots
from training.governance.registry import ensure_experiment, set_version_tags
from training.governance.signing import sign_version
from training.model import BASELINE_KIND, DEFAULT_KIND, TrainingOutcome, model_params
from training.results import jsonable, write_json

PACKAGES = ("scikit-learn", "numpy", "pandas", "scipy", "shap", "fairlearn", "mlflow", "numba")


@dataclass
class DataInfo:
    """Where the training data came from and what validation said about it."""

    source: str
    sha256: str
    rows: int
    validation: dict[str, Any]
    customers_source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RegisteredVersion:
    run_id: str
    name: str
    version: str
    experiment_id: str


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_version() -> dict[str, str]:
    """The git commit of the working tree and whether the training code differs from it."""

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10
        )
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "training", "stream", "fraud")
    return {"commit": commit, "dirty": "true" if dirty else "false"}


def environment() -> dict[str, str]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return {"python": platform.python_version(), "platform": platform.platform(), **versions}


def _pip_requirements(env: dict[str, str]) -> list[str]:
    return [f"{p}=={env[p]}" for p in ("scikit-learn", "numpy", "pandas", "scipy")]


def _write_json(folder: Path, name: str, data: Any) -> Path:
    return write_json(folder / name, data)


def decision_policy(outcome: TrainingOutcome) -> dict[str, Any]:
    choice = outcome.default.threshold_choice
    refit = outcome.split.refit
    return {
        "thresholds": choice.thresholds.as_dict(),
        "rule": "decline if score >= decline; review if review <= score < decline; else approve",
        "chosen_on": "out-of-time scores of the folds' models" if refit else "validation",
        "carried_to_the_refit_model_as": "probability" if refit else None,
        "validation_window": [
            outcome.split.validation_from.isoformat(),
            outcome.split.validation_to.isoformat(),
        ],
        "targets": {
            "decline_precision": choice.targets.decline_precision,
            "decline_confidence": choice.targets.decline_confidence,
            "recall": choice.targets.recall,
            "max_alert_rate": choice.targets.max_alert_rate,
        },
        "on_validation": choice.to_dict(),
        "feature_names": list(outcome.spec.names),
        "categorical_features": list(outcome.spec.categorical),
    }


def _plots(outcome: TrainingOutcome, folder: Path) -> list[Path]:
    test = outcome.windows["test"]
    thresholds = outcome.default.threshold_choice.thresholds
    scores = {"gradient boosting": outcome.default.scores["test"]}
    if outcome.baseline is not None:
        scores["random forest (baseline)"] = outcome.baseline.scores["test"]
    paths = [
        plots.pr_curves(test["is_fraud"], scores, thresholds, folder / "pr_curve.png"),
        plots.calibration_plot(
            outcome.default.evaluation["test"]["calibration"]["reliability"],
            folder / "calibration.png",
        ),
        plots.score_distribution(
            test["is_fraud"],
            outcome.default.scores["test"],
            thresholds,
            folder / "score_distribution.png",
        ),
        plots.feature_importance(outcome.importance, folder / "feature_importance.png"),
    ]
    if outcome.fairness is not None:
        paths.append(plots.fairness_plot(outcome.fairness, folder / "fairness.png"))
    return paths


def _log_datasets(outcome: TrainingOutcome, data: DataInfo) -> None:
    """Each window as an MLflow dataset input: its source file and a digest of file + window."""
    import mlflow
    import mlflow.data

    contexts = {"train": "training", "validation": "validation", "test": "testing"}
    for window, context in contexts.items():
        frame = outcome.windows[window]
        digest = hashlib.sha256(f"{data.sha256}:{window}:{len(frame)}".encode()).hexdigest()
        with warnings.catch_warnings():
            # The source is a plain path; MLflow's guess among its path-like source types and
            # its hint about integer label columns are both noise here.
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(  # type: ignore[attr-defined]
                frame,
                source=data.source,
                targets="is_fraud",
                name=f"history-{window}",
                digest=digest[:16],
            )
            mlflow.log_input(dataset, context=context)


def _log_model(
    settings: Settings,
    outcome: TrainingOutcome,
    env: dict[str, str],
    test: pd.DataFrame,
    example: pd.DataFrame,
) -> Any:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    names = list(outcome.spec.names)
    sample = test[names].head(100)
    return mlflow.sklearn.log_model(
        outcome.default.model,
        name="model",
        registered_model_name=settings.model_name,
        signature=infer_signature(sample, outcome.default.model.predict_proba(sample)),
        input_example=example,
        pip_requirements=_pip_requirements(env),
        pyfunc_predict_fn="predict_proba",
        serialization_format="skops",
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
    )


def _fairness_detail(fairness: dict[str, Any] | None) -> str:
    if fairness is None:
        return "no customers table: not audited"
    details = [f"{name}: {result['detail']}" for name, result in fairness["attributes"].items()]
    return "; ".join(details)[:4900]


def _version_tags(outcome: TrainingOutcome, data: DataInfo, code: dict[str, str]) -> dict[str, Any]:
    choice = outcome.default.threshold_choice
    test = outcome.default.evaluation["test"]
    tags: dict[str, Any] = {
        "policy.review_threshold": repr(choice.thresholds.review),
        "policy.decline_threshold": repr(choice.thresholds.decline),
        "policy.decline_precision_target": choice.targets.decline_precision,
        "policy.recall_target": choice.targets.recall,
        "policy.max_alert_rate": choice.targets.max_alert_rate,
        "model.kind": DEFAULT_KIND,
        "model.params": json.dumps(outcome.default.params, sort_keys=True),
        "model.genuine_share": outcome.config.genuine_share,
        "model.feature_names": json.dumps(list(outcome.spec.names)),
        "model.categorical_features": json.dumps(list(outcome.spec.categorical)),
        "data.source": data.source,
        "data.sha256": data.sha256,
        "data.rows": data.rows,
        "code.commit": code["commit"],
        "code.dirty": code["dirty"],
        "gate.data_validation": "passed" if data.validation.get("passed") else "failed",
        "gate.fairness": "passed" if outcome.fairness and outcome.fairness["passed"] else "failed",
        "gate.fairness_detail": _fairness_detail(outcome.fairness),
        "test.average_precision": test["average_precision"],
        "test.roc_auc": test["roc_auc"],
    }
    tags = jsonable(tags)
    for key, value in outcome.split.as_dict().items():
        tags[f"split.{key}"] = value
    return tags


def _log_trials(outcome: TrainingOutcome, experiment_id: str) -> dict[str, str]:
    """Each search trial as a nested run; the tags that name the chosen one on the version."""
    import mlflow

    search = outcome.default.search
    if search is None:
        return {}
    chosen_run = ""
    for trial in search.trials:
        chosen = trial.number == search.best.number
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=f"search trial {trial.number}", nested=True
        ) as child:
            mlflow.log_params({f"model.{key}": value for key, value in trial.params.items()})
            metrics = {
                "mean_average_precision": trial.objective,
                "fit_seconds": trial.fit_seconds,
            }
            for fold in trial.folds:
                metrics[f"fold{fold.fold}_average_precision"] = fold.average_precision
                metrics[f"fold{fold.fold}_roc_auc"] = fold.roc_auc
            mlflow.log_metrics(metrics)
            mlflow.set_tags({"search.trial": trial.number, "search.chosen": str(chosen).lower()})
            if chosen:
                chosen_run = child.info.run_id
    return {
        "search.trials": str(len(search.trials)),
        "search.chosen_trial": str(search.best.number),
        "search.chosen_run_id": chosen_run,
        "search.objective": "mean average precision over the folds",
        "search.chosen_mean_average_precision": repr(search.best.objective),
        "search.chosen_params": json.dumps(search.best.params, sort_keys=True),
    }


def log_training_run(
    settings: Settings, outcome: TrainingOutcome, data: DataInfo, run_name: str | None = None
) -> RegisteredVersion:
    """Log the run, register the default model, sign the version (its stored files and the
    tags that decide how it scores) and point `@challenger` at it."""
    import mlflow
    import mlflow.sklearn

    settings.signing_key()  # no key (production): refuse before anything is logged
    client = open_store(settings)
    experiment_id = ensure_experiment(client, TRAINING_EXPERIMENT, settings)
    code = code_version()
    env = environment()
    summary = outcome.summary()
    names = list(outcome.spec.names)
    test = outcome.windows["test"]
    with (
        tempfile.TemporaryDirectory() as tmp,
        mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run,
    ):
        folder = Path(tmp)
        params: dict[str, Any] = {
            f"model.{k}": v for k, v in _fitted_params(outcome.default, DEFAULT_KIND).items()
        }
        baseline_params = _fitted_params(outcome.baseline, BASELINE_KIND, outcome)
        params.update({f"baseline.{k}": v for k, v in baseline_params.items()})
        params.update({f"split.{k}": v for k, v in outcome.split.as_dict().items()})
        params.update(
            {
                "seed": outcome.config.seed,
                "design": "refit" if outcome.split.refit else "holdout",
                "search.trials": len(outcome.default.search.trials)
                if outcome.default.search is not None
                else 0,
                "genuine_share": outcome.config.genuine_share,
                "data.source": data.source,
                "data.sha256": data.sha256,
                "features.count": len(names),
                "policy.decline_precision_target": outcome.config.targets.decline_precision,
                "policy.decline_confidence": str(outcome.config.targets.decline_confidence),
                "policy.recall_target": outcome.config.targets.recall,
                "policy.max_alert_rate": outcome.config.targets.max_alert_rate,
                **{f"fairness.{k}": v for k, v in outcome.config.fairness_gate.to_dict().items()},
            }
        )
        mlflow.log_params(params)
        metrics = {}
        for window in ("validation", "test"):
            metrics.update(flat_metrics(window, outcome.default.evaluation[window]))
            if outcome.baseline is not None:
                metrics.update(
                    flat_metrics(f"baseline_{window}", outcome.baseline.evaluation[window])
                )
        metrics["fit_seconds"] = outcome.default.fit_seconds
        mlflow.log_metrics(metrics)
        mlflow.set_tags(
            {
                "code.commit": code["commit"],
                "code.dirty": code["dirty"],
                **{f"env.{k}": v for k, v in env.items()},
                "data.validation": "passed" if data.validation.get("passed") else "failed",
            }
        )
        _log_datasets(outcome, data)
        search_tags = _log_trials(outcome, experiment_id)

        for name, content in (
            (EVALUATION_ARTIFACT, summary),
            (POLICY_ARTIFACT, decision_policy(outcome)),
            (REFERENCE_ARTIFACT, outcome.reference),
            ("data_validation.json", data.validation),
            ("environment.json", {**env, **code}),
            ("fairness.json", outcome.fairness),
        ):
            mlflow.log_artifact(str(_write_json(folder, name, content)))
        plot_folder = folder / "plots"
        plot_folder.mkdir()
        for path in _plots(outcome, plot_folder):
            mlflow.log_artifact(str(path), artifact_path="plots")
        window_path = folder / "test_window.parquet"
        test.to_parquet(window_path, index=False)
        mlflow.log_artifact(str(window_path), artifact_path=str(Path(TEST_WINDOW_ARTIFACT).parent))

        example = test[names].dropna().head(5)
        if example.empty:
            example = test[names].head(5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            info = _log_model(settings, outcome, env, test, example)
        version = str(info.registered_model_version)
        run_id = run.info.run_id
    tags = {**_version_tags(outcome, data, code), **search_tags}
    set_version_tags(client, settings.model_name, version, tags)
    learned = "refit on every labelled day of" if outcome.split.refit else "trained on"
    client.update_model_version(
        settings.model_name,
        version,
        description=(
            f"Gradient-boosted trees {learned} {outcome.split.train_from.date()} to "
            f"{outcome.split.train_to.date()} ({data.source}); thresholds review="
            f"{outcome.default.threshold_choice.thresholds.review:.4g}, decline="
            f"{outcome.default.threshold_choice.thresholds.decline:.4g}."
        ),
    )
    sign_version(settings, client, settings.model_name, version)
    client.set_registered_model_alias(settings.model_name, CHALLENGER, version)
    return RegisteredVersion(run_id, settings.model_name, version, experiment_id)


def _fitted_params(model: Any, kind: Any, outcome: TrainingOutcome | None = None) -> dict[str, Any]:
    """The parameters a model was fitted with; for an absent baseline, what it would use."""
    if model is not None and model.params:
        return dict(model.params)
    overrides = outcome.config.overrides.get(kind, {}) if outcome is not None else {}
    return {**model_params(kind), **overrides}


def read_test_window(client: Any, run_id: str) -> pd.DataFrame:
    """The test-window frame (context + features) a training run logged."""
    with tempfile.TemporaryDirectory() as folder:
        path = client.download_artifacts(run_id, TEST_WINDOW_ARTIFACT, folder)
        return pd.read_parquet(path)
