"""The pure part of retraining: check the labelled set, cut it, combine it with the history, train.

No I/O here: `training.retrain.run` reads Kafka and the registry and calls these. The reasons for
the choices are in `training.retrain.run`'s docstring.

    training, recent = split_recent(labelled, recent_share=0.3)
    windows = combine_windows(history_windows, training)
    outcome = train_challenger(windows, split, spec, config, test_groups)
    comparison = compare_on_window(recent, {"challenger": ..., "champion": ...})
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from fraud.errors import FraudScorerError, ValidationError
from stream.scoring import Thresholds
from training.data import FeatureSpec, TimeSplit
from training.evaluation import paired_difference, tier_metrics
from training.model import TrainConfig, TrainingOutcome, pipeline

FEEDBACK_ORIGIN = "feedback"
HISTORY_ORIGIN = "history"


class RetrainRefusedError(FraudScorerError):
    """Retraining stopped before registering anything, and the champion is untouched: the
    message names what is missing (feedback, labels, fraud, a reachable service) and what to do."""


@dataclass(frozen=True)
class Minimums:
    """The least labelled data a retrain accepts (labels from feedback, presumed legit apart)."""

    labels: int = 100
    frauds: int = 10
    recent_frauds: int = 3


def check_labelled_set(
    frame: pd.DataFrame, report: Mapping[str, Any], minimums: Minimums, where: str
) -> None:
    """Refuse (RetrainRefusedError) a labelled set too thin to learn from; `where` names the
    feedback topic for the message."""
    if report["feedback_read"] == 0:
        raise RetrainRefusedError(
            f"no feedback yet on {where}: nothing to learn from. Labels come from analysts "
            "(`fraud label`, or the simulated desk `fraud analyst`) and from chargebacks"
        )
    labels = int(report["rows"]) - int(report.get("presumed_legit", 0))
    held_back = (
        f"{report['too_recent']} too recent for the label delay "
        f"({report['label_delay_days'] * 86400:g} s), {report['without_decision']} without a "
        f"logged decision, {report['invalid']} invalid, {report['after_as_of']} after as-of"
    )
    if labels < minimums.labels:
        raise RetrainRefusedError(
            f"too few labels: {labels} usable from {report['feedback_read']} feedback records "
            f"on {where} ({held_back}); at least {minimums.labels} are needed "
            "(wait for more, or lower --min-labels)"
        )
    frauds = int(frame["label"].sum()) if len(frame) else 0
    if frauds < minimums.frauds:
        raise RetrainRefusedError(
            f"too few fraud labels: {frauds} of {labels} usable labels; at least "
            f"{minimums.frauds} are needed (wait for more, or lower --min-frauds)"
        )


def split_recent(
    labelled: pd.DataFrame, recent_share: float, min_recent_frauds: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(older rows for training, the most recent labelled window for evaluation).

    The cut is the event time above which `recent_share` of the rows lie; both parts must hold
    fraud and legitimate rows."""
    if not 0.0 < recent_share < 1.0:
        raise ValueError(f"recent_share must be within (0, 1), got {recent_share}")
    ordered = labelled.sort_values(["event_time", "transaction_id"], kind="stable")
    ordered = ordered.reset_index(drop=True)
    cut_index = round(len(ordered) * (1.0 - recent_share))
    cut_index = min(max(cut_index, 1), len(ordered) - 1)
    cut = ordered["event_time"].iloc[cut_index]
    older = ordered.loc[ordered["event_time"] < cut].reset_index(drop=True)
    recent = ordered.loc[ordered["event_time"] >= cut].reset_index(drop=True)
    for name, part, least in (("training", older, 1), ("recent", recent, min_recent_frauds)):
        frauds = int(part["label"].sum())
        if frauds < least or frauds == len(part):
            raise RetrainRefusedError(
                f"the {name} part of the labelled set (cut at {cut.isoformat()}) has "
                f"{len(part)} rows and {frauds} fraud: it needs at least {least} fraud and "
                "some legitimate rows (wait for more labels, or change --recent-share)"
            )
    return older, recent


def feedback_rows(labelled: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Labelled-set rows in the shape of history training rows (context + features)."""
    frame = pd.DataFrame(
        {
            "transaction_id": labelled["transaction_id"].astype("string"),
            "timestamp": labelled["event_time"],
            "is_fraud": labelled["label"].astype("int64"),
            "origin": FEEDBACK_ORIGIN + ":" + labelled["source"].astype("string"),
        }
    )
    for name in spec.names:
        frame[name] = (
            labelled[name].astype(float) if name in labelled.columns else np.nan
        )  # a feature the scorer did not log is missing, as in the stream's defaults
    return frame


def combine_windows(
    history_windows: Mapping[str, pd.DataFrame], training_feedback: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """The history's windows, with the older feedback rows appended to the training window."""
    windows = {name: frame.copy() for name, frame in history_windows.items()}
    train = windows["train"]
    train["origin"] = HISTORY_ORIGIN
    windows["train"] = pd.concat([train, training_feedback], ignore_index=True, sort=False)
    return windows


def train_challenger(
    windows: dict[str, pd.DataFrame],
    split: TimeSplit,
    spec: FeatureSpec,
    config: TrainConfig,
    test_groups: pd.DataFrame | None,
) -> TrainingOutcome:
    """The challenger: `training.model.pipeline.train_on_windows`, default model only, refusing
    windows without both classes as a retrain refusal."""
    try:
        return pipeline.train_on_windows(
            windows, split, spec, replace(config, with_baseline=False), test_groups
        )
    except ValidationError as exc:  # a window without both classes: nothing to learn from
        raise RetrainRefusedError(str(exc)) from exc


Scorer = tuple[Callable[[pd.DataFrame], npt.NDArray[np.float64]], Thresholds]


def window_metrics(
    labels: npt.ArrayLike, scores: npt.ArrayLike, thresholds: Thresholds
) -> dict[str, Any]:
    """Ranking quality and the alert tier of one model on one labelled window."""
    y = np.asarray(labels, dtype=np.int64)
    both = len(np.unique(y)) == 2
    tiers = tier_metrics(y, scores, thresholds)
    return {
        "average_precision": float(average_precision_score(y, scores)) if both else None,
        "roc_auc": float(roc_auc_score(y, scores)) if both else None,
        "alert_recall": tiers["alert"]["recall"],
        "alert_precision": tiers["alert"]["precision"],
        "alert_rate": tiers["alert_rate"],
        "thresholds": thresholds.as_dict(),
    }


def compare_on_window(
    recent: pd.DataFrame,
    scorers: Mapping[str, Scorer],
    paired: tuple[str, str] | None = None,
    *,
    confidence: float = 0.95,
    replicates: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Each model's metrics on the same rows (the logged feature vectors), by role; with
    `paired` = (first, second), also the difference first - second in average precision and its
    one-sided bounds at `confidence` from a paired bootstrap of the rows stratified by label
    (training.evaluation.paired_difference), under "average_precision_difference"."""
    labels = recent["label"].to_numpy()
    result: dict[str, Any] = {
        "rows": len(recent),
        "fraud": int(labels.sum()),
        "event_time_from": recent["event_time"].min().isoformat(),
        "event_time_to": recent["event_time"].max().isoformat(),
        "by_source": {str(k): int(v) for k, v in recent["source"].value_counts().items()},
    }
    scores = {}
    for role, (score, thresholds) in scorers.items():
        scores[role] = np.asarray(score(recent), dtype=np.float64)
        result[role] = window_metrics(labels, scores[role], thresholds)
    if paired is not None and len(np.unique(labels)) == 2:
        first, second = paired
        result["average_precision_difference"] = {
            "of": f"{first} - {second}",
            **paired_difference(
                labels,
                scores[first],
                scores[second],
                replicates=replicates,
                confidence=confidence,
                seed=seed,
            ),
        }
    return result


def labelled_set_digest(history_sha256: str, labelled: pd.DataFrame) -> str:
    """One digest of everything the challenger learned from and was judged on: the history
    file's and the labelled set's (ids, times, labels, sources, logged features)."""
    rows = pd.util.hash_pandas_object(labelled, index=False).to_numpy()
    digest = hashlib.sha256(history_sha256.encode())
    digest.update(",".join(map(str, labelled.columns)).encode())
    digest.update(rows.tobytes())
    return digest.hexdigest()
