"""Evaluation on a time window: ranking quality, the decision tiers, scenarios, calibration.

Tiers come from `stream.scoring.policy.decide_many`, the function the scorer uses, so the tiers
reported here are the ones the stream would have produced with the same thresholds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from stream.scoring import ALERT_TIERS, TIERS, Thresholds, decide_many


def _safe(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def card_precision_at_k(
    frame: pd.DataFrame, scores: npt.ArrayLike, k: int = 100
) -> tuple[float, pd.Series]:
    """Per day: of the k cards with the highest score that day, the share truly defrauded.

    A card's score for a day is its highest transaction score that day; a card counts as
    defrauded that day if any of its transactions that day is fraud. Days with fewer than k
    cards divide by k all the same (an analyst team reviews k cards a day). Returns the mean
    over days and the per-day values.
    """
    per_tx = pd.DataFrame(
        {
            "day": frame["timestamp"].dt.floor("D").to_numpy(),
            "card_id": frame["card_id"].to_numpy(),
            "score": np.asarray(scores, dtype=float),
            "is_fraud": frame["is_fraud"].to_numpy(),
        }
    )
    per_card = per_tx.groupby(["day", "card_id"], sort=True).agg(
        score=("score", "max"), is_fraud=("is_fraud", "max")
    )
    per_card = per_card.reset_index().sort_values(
        ["day", "score", "card_id"], ascending=[True, False, True], kind="stable"
    )
    top = per_card.groupby("day", sort=True).head(k)
    per_day = top.groupby("day", sort=True)["is_fraud"].sum() / k
    per_day.name = f"card_precision_at_{k}"
    return (float(per_day.mean()) if len(per_day) else float("nan")), per_day


def tier_metrics(labels: npt.ArrayLike, scores: npt.ArrayLike, thresholds: Thresholds) -> dict:
    """Count, precision and recall per tier, plus the alert set (review + decline)."""
    y = np.asarray(labels, dtype=np.int64)
    tiers = decide_many(scores, thresholds)
    positives = int(y.sum())
    result: dict[str, Any] = {}
    for tier in (*TIERS, "alert"):
        chosen = np.isin(tiers, list(ALERT_TIERS)) if tier == "alert" else tiers == tier
        flagged = int(chosen.sum())
        caught = int(y[chosen].sum())
        result[tier] = {
            "transactions": flagged,
            "share": flagged / len(y) if len(y) else float("nan"),
            "fraud": caught,
            "precision": _safe(caught / flagged) if flagged else None,
            "recall": _safe(caught / positives) if positives else None,
        }
    result["alert_rate"] = result["alert"]["share"]
    return result


def scenario_recall(
    labels: npt.ArrayLike,
    scenarios: pd.Series | None,
    scores: npt.ArrayLike,
    thresholds: Thresholds,
) -> pd.DataFrame:
    """For each fraud scenario: its fraud count, and the share alerted and declined."""
    y = np.asarray(labels, dtype=np.int64) == 1
    if scenarios is None:
        names = pd.Series(["(unknown)"] * len(y))
    else:
        names = pd.Series(scenarios).astype("string").fillna("(unknown)").reset_index(drop=True)
    tiers = decide_many(scores, thresholds)
    frame = pd.DataFrame(
        {
            "scenario": names[y].to_numpy(),
            "alerted": np.isin(tiers[y], list(ALERT_TIERS)),
            "declined": tiers[y] == "decline",
        }
    )
    table = frame.groupby("scenario", sort=True).agg(
        fraud=("alerted", "size"),
        recall_alert=("alerted", "mean"),
        recall_decline=("declined", "mean"),
    )
    return table.reset_index()


def calibration(labels: npt.ArrayLike, scores: npt.ArrayLike, bins: int = 10) -> dict[str, Any]:
    """Brier score, expected calibration error and the reliability table (equal-width bins)."""
    y = np.asarray(labels, dtype=float)
    p = np.asarray(scores, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    table = []
    ece = 0.0
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        if count == 0:
            continue
        mean_score = float(p[members].mean())
        fraud_rate = float(y[members].mean())
        ece += count / len(p) * abs(mean_score - fraud_rate)
        table.append(
            {
                "bin_from": float(edges[b]),
                "bin_to": float(edges[b + 1]),
                "transactions": count,
                "mean_score": mean_score,
                "fraud_rate": fraud_rate,
            }
        )
    return {
        "brier": float(brier_score_loss(y, p)),
        "expected_calibration_error": float(ece),
        "mean_score": float(p.mean()),
        "fraud_rate": float(y.mean()),
        "reliability": table,
    }


def ranking_metrics(frame: pd.DataFrame, scores: npt.ArrayLike) -> dict[str, Any]:
    y = frame["is_fraud"].to_numpy()
    both = len(np.unique(y)) == 2
    card_p100, _ = card_precision_at_k(frame, scores, k=100)
    return {
        "average_precision": _safe(average_precision_score(y, scores)) if both else None,
        "roc_auc": _safe(roc_auc_score(y, scores)) if both else None,
        "card_precision_at_100": _safe(card_p100),
        "transactions": len(y),
        "fraud": int(y.sum()),
        "fraud_rate": float(y.mean()) if len(y) else None,
    }


def evaluate_window(
    frame: pd.DataFrame, scores: npt.ArrayLike, thresholds: Thresholds
) -> dict[str, Any]:
    """Every metric for one window. `frame` needs timestamp, card_id, is_fraud (and
    fraud_scenario when known)."""
    scenarios = frame["fraud_scenario"] if "fraud_scenario" in frame.columns else None
    y = frame["is_fraud"].to_numpy()
    result = ranking_metrics(frame, scores)
    result["tiers"] = tier_metrics(y, scores, thresholds)
    result["alert_rate"] = result["tiers"]["alert_rate"]
    result["scenarios"] = scenario_recall(y, scenarios, scores, thresholds).to_dict("records")
    result["calibration"] = calibration(y, scores)
    return result


def bank_targets(
    evaluation: dict[str, Any], precision_target: float = 0.95, recall_target: float = 0.90
) -> dict[str, Any]:
    """What the window achieved against the bank's targets, stated plainly."""
    tiers = evaluation["tiers"]
    decline_precision = tiers["decline"]["precision"]
    alert_recall = tiers["alert"]["recall"]
    return {
        "decline_precision": decline_precision,
        "decline_precision_target": precision_target,
        "decline_precision_met": decline_precision is not None
        and decline_precision >= precision_target,
        "recall": alert_recall,
        "recall_target": recall_target,
        "recall_met": alert_recall is not None and alert_recall >= recall_target,
        "alert_rate": evaluation["alert_rate"],
    }


def flat_metrics(prefix: str, evaluation: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics of one evaluation, named for MLflow (`test_average_precision`, ...)."""
    result: dict[str, float] = {}
    for key in ("average_precision", "roc_auc", "card_precision_at_100", "alert_rate"):
        if evaluation.get(key) is not None:
            result[f"{prefix}_{key}"] = float(evaluation[key])
    for tier in ("decline", "review", "alert"):
        for measure in ("precision", "recall"):
            value = evaluation["tiers"][tier][measure]
            if value is not None:
                result[f"{prefix}_{tier}_{measure}"] = float(value)
    for row in evaluation.get("scenarios", []):
        name = str(row["scenario"]).replace("(", "").replace(")", "")
        result[f"{prefix}_recall_{name}"] = float(row["recall_alert"])
    calib = evaluation.get("calibration")
    if calib:
        result[f"{prefix}_brier"] = calib["brier"]
        result[f"{prefix}_ece"] = calib["expected_calibration_error"]
    return result
