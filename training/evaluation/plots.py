"""Evaluation plots, saved as PNG (and logged to MLflow by the caller)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import precision_recall_curve

from stream.scoring import Thresholds


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on a server
    import matplotlib.pyplot as plt

    return plt


def pr_curves(
    labels: npt.ArrayLike,
    scores_by_model: Mapping[str, npt.ArrayLike],
    thresholds: Thresholds,
    path: Path,
) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    y = np.asarray(labels)
    for name, scores in scores_by_model.items():
        precision, recall, _ = precision_recall_curve(y, scores)
        ax.plot(recall, precision, label=name)
    first = np.asarray(next(iter(scores_by_model.values())), dtype=float)
    for tier, value in thresholds.as_dict().items():
        chosen = first >= value
        if chosen.any() and y.sum():
            ax.scatter(
                y[chosen].sum() / y.sum(),
                y[chosen].mean(),
                zorder=3,
                label=f"{tier} >= {value:.3g}",
            )
    ax.axhline(0.95, color="grey", linestyle=":", linewidth=1)
    ax.axvline(0.90, color="grey", linestyle=":", linewidth=1)
    ax.set(
        xlabel="recall",
        ylabel="precision",
        title="Precision-recall, test period",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def calibration_plot(reliability: list[dict[str, Any]], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    xs = [row["mean_score"] for row in reliability]
    ys = [row["fraud_rate"] for row in reliability]
    sizes = [max(10.0, 200 * np.log10(1 + row["transactions"]) / 6) for row in reliability]
    ax.plot(xs, ys, marker="o", markersize=3)
    ax.scatter(xs, ys, s=sizes, alpha=0.4)
    ax.set(
        xlabel="mean score in bin",
        ylabel="fraud rate in bin",
        title="Calibration, test period",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def score_distribution(
    labels: npt.ArrayLike, scores: npt.ArrayLike, thresholds: Thresholds, path: Path
) -> Path:
    plt = _pyplot()
    y = np.asarray(labels)
    s = np.clip(np.asarray(scores, dtype=float), 1e-6, 1.0)
    bins = np.logspace(-6, 0, 61)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(s[y == 0], bins=bins, alpha=0.6, label="legitimate", density=True)
    ax.hist(s[y == 1], bins=bins, alpha=0.6, label="fraud", density=True)
    for tier, value in thresholds.as_dict().items():
        ax.axvline(max(value, 1e-6), linestyle="--", linewidth=1, color="black")
        ax.text(max(value, 1e-6), ax.get_ylim()[1] * 0.9, f" {tier}", fontsize=8)
    ax.set_xscale("log")
    ax.set(xlabel="score (log scale)", ylabel="density", title="Score distribution, test period")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def feature_importance(importance: pd.Series, path: Path, top: int = 20) -> Path:
    plt = _pyplot()
    shown = importance.head(top)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(shown) + 1.2))
    ax.barh(list(shown.index), shown.to_numpy())
    ax.set(xlabel="mean |SHAP contribution| (log-odds)", title="Global feature importance")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fairness_plot(report: dict[str, Any], path: Path) -> Path:
    plt = _pyplot()
    metric = report["gate"]["metric"]
    attributes = report["attributes"]
    fig, axes = plt.subplots(1, len(attributes), figsize=(5 * len(attributes), 4), squeeze=False)
    for ax, (name, result) in zip(axes[0], attributes.items(), strict=True):
        rows = result["groups"]
        values = [row[metric] for row in rows]
        intervals = [
            row.get("gate_metric_ci95") or [v, v] for row, v in zip(rows, values, strict=True)
        ]
        low = [max(0.0, v - ci[0]) for v, ci in zip(values, intervals, strict=True)]
        high = [max(0.0, ci[1] - v) for v, ci in zip(values, intervals, strict=True)]
        ax.bar([row["group"] for row in rows], values, yerr=[low, high], capsize=3)
        ax.set(title=f"{metric} by {name} (95% CI over customers)", ylabel=metric)
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
