"""Model card sections of the refit design: folds, search, comparison, carry-over, alert budgets.

Markdown lines from a training run's recorded summary (the `evaluation.json` artifact); the card
(training.governance.model_card) places them. Nothing here reads the registry.
"""

from __future__ import annotations

import json
from typing import Any


def pct(value: Any, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * float(value):.{digits}f}%"


def num(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def _day(value: str) -> str:
    return str(value)[:10]


def folds_section(summary: dict[str, Any]) -> list[str]:
    """How the model was chosen out of time and then refit (refit design only)."""
    split = summary["split"]
    folds = json.loads(split.get("folds") or "[]")
    search = summary.get("search")
    if not folds or search is None:
        return []
    chosen = next(t for t in search["trials"] if t["number"] == search["chosen_trial"])
    rows = [
        [
            str(number),
            f"{_day(fold['train_from'])} to {_day(fold['train_to'])}",
            f"{_day(fold['validation_from'])} to {_day(fold['validation_to'])}",
            str(result["rows"]),
            str(result["fraud"]),
            num(result["average_precision"]),
        ]
        for number, (fold, result) in enumerate(zip(folds, chosen["folds"], strict=True), start=1)
    ]
    share = summary.get("genuine_share", 1.0)
    lines = [
        "",
        "Refit design: hyper-parameters and thresholds are chosen out of time on rolling-origin "
        f"folds, then the model is refit on every labelled day ({_day(split['train_from'])} to "
        f"{_day(split['train_to'])}, the test period starting one label delay later). Each fold "
        "fits on the days up to its origin and is scored on the days that begin one label delay "
        "after it; the validation window is the union of those days, every row scored by a "
        "model that never saw it:",
        "",
        *table(
            ["fold", "fits on", "scores (validation)", "transactions", "fraud", "AP (chosen)"],
            rows,
        ),
        "",
    ]
    if share < 1.0:
        lines += [
            f"Every fit (each fold's and the refit) learns from every fraud and "
            f"{pct(share, 0)} of the genuine transactions (the same ones in every fit, by a "
            "hash of the transaction id), weighted to stand for the rest so that scores stay "
            "probabilities.",
            "",
        ]
    return lines


def trial_cells(trial: dict[str, Any], separator: str = " / ") -> list[str]:
    """A search trial as text: its parameters, mean AP, AP per fold, fit seconds."""
    params = ", ".join(
        f"{key}={value}" for key, value in trial["params"].items() if key != "early_stopping"
    )
    per_fold = separator.join(num(fold["average_precision"], 3) for fold in trial["folds"])
    return [params, num(trial["mean_average_precision"]), per_fold, f"{trial['fit_seconds']:.0f}"]


def search_section(summary: dict[str, Any], space: dict[str, Any]) -> list[str]:
    """The trials of the search, the chosen one in bold."""
    search = summary.get("search")
    if search is None:
        return []
    rows = []
    for trial in search["trials"]:
        mark = "**" if trial["number"] == search["chosen_trial"] else ""
        params, mean, per_fold, seconds = trial_cells(trial)
        rows.append(
            [f"{mark}{trial['number']}{mark}", params, f"{mark}{mean}{mark}", per_fold, seconds]
        )
    space_text = "; ".join(
        f"{name} in {{{', '.join(str(v) for v in values)}}}" for name, values in space.items()
    )
    return [
        "## Hyper-parameter search",
        "",
        f"{len(search['trials'])} settings of gradient boosting, each fitted on every fold and "
        "ranked by its mean average precision over the folds' validation days (the estimator's "
        "defaults first; the others drawn at random, seeded, from: "
        f"{space_text}). Each trial is a nested MLflow run under this version's run; the chosen "
        "one is recorded on the version (tags `search.*`). The test period played no part.",
        "",
        *table(["trial", "parameters", "mean AP", "AP per fold", "fit seconds"], rows),
        "",
    ]


def comparison_columns(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The test evaluations side by side: this model, the baseline, the previous design."""
    columns = {"gradient boosting (this model)": summary["evaluation"]["test"]}
    if summary.get("baseline"):
        columns["random forest (baseline, same rows)"] = summary["baseline"]["evaluation"]["test"]
    if summary.get("previous_design"):
        columns["previous design"] = summary["previous_design"]["evaluation"]["test"]
    return columns


def previous_design_lines(summary: dict[str, Any]) -> list[str]:
    """What the previous design was, and the change in average precision."""
    previous = summary.get("previous_design")
    if not previous:
        return []
    split = previous["split"]
    before = previous["evaluation"]["test"]["average_precision"]
    after = summary["evaluation"]["test"]["average_precision"]
    change = (after - before) / before if before else None
    return [
        "",
        "The previous design ran beside it on the same test rows: fitted once on "
        f"{_day(split['train_from'])} to {_day(split['train_to'])} (every row), thresholds on "
        f"{_day(split['validation_from'])} to {_day(split['validation_to'])}, the estimator's "
        f"default parameters and the {previous['feature_count']} features before the card "
        f"habit features. Average precision {num(before)} -> {num(after)} "
        f"({'n/a' if change is None else f'{100 * change:+.1f}%'}).",
    ]


def scenario_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Recall per fraud scenario (alerted, declined) for this model, and alerted for the others."""
    columns = comparison_columns(summary)
    names = list(columns)
    header = ["scenario", "fraud transactions", "alerted", "declined"]
    header += [f"alerted, {name.split(' (')[0]}" for name in names[1:]]
    found = {
        name: {row["scenario"]: row for row in evaluation["scenarios"]}
        for name, evaluation in columns.items()
    }
    rows = []
    for row in summary["evaluation"]["test"]["scenarios"]:
        scenario = row["scenario"]
        others = [found[name].get(scenario) for name in names[1:]]
        rows.append(
            [
                str(scenario),
                str(row["fraud"]),
                pct(row["recall_alert"]),
                pct(row["recall_decline"]),
                *(pct(other["recall_alert"]) if other else "n/a" for other in others),
            ]
        )
    return header, rows


def carry_over_lines(summary: dict[str, Any]) -> list[str]:
    """The thresholds' carry-over to a longer-trained model, checked on the folds."""
    check = summary.get("carry_over_check")
    if not check:
        return []
    achieved = check["achieved"]
    folds = ", ".join(str(fold) for fold in check["chosen_on_folds"])
    carried = check.get("carried") or {}
    raised = (
        f" (review raised from {carried['review_from_validation']:.4g} to keep the cap on its "
        f"label-delay days, where it would have alerted on "
        f"{pct(carried['recent_alert_rate_before'], 2)})"
        if carried.get("review_raised")
        else ""
    )
    return [
        "- Carried to the refit model as probabilities (every fit is the same procedure, so a "
        "score means the same estimated chance of fraud), with the alert-rate cap enforced "
        "again on the refit model's scores of the label-delay days before the test (a share of "
        "traffic, not a confidence). Checked on the folds before the test: thresholds chosen on "
        f"fold(s) {folds} alone, carried the same way to fold {check['applied_to_fold']}'s model "
        "(which learned from more days, as the refit does: decline >= "
        f"{check['thresholds']['decline']:.4g}, review >= {check['thresholds']['review']:.4g}"
        f"{raised}), declined {achieved['declined']} of its {achieved['rows']} validation "
        f"transactions at {pct(achieved['decline_precision'])} precision (target "
        f"{pct(check['decline_precision_target'], 0)}), alerting on "
        f"{pct(achieved['alert_rate'], 2)} with alert recall {pct(achieved['alert_recall'])}.",
    ]


def curve_section(summary: dict[str, Any]) -> list[str]:
    """Recall for each alert budget: the threshold from validation, the result on the test."""
    curve = summary.get("alert_rate_curve") or []
    if not curve:
        return []
    scenarios = sorted({name for row in curve for name in row["test_recall_by_scenario"]})
    rows = [
        [
            pct(row["alert_rate_budget"]),
            f"{row['review_threshold']:.4g}",
            pct(row["validation_recall"]),
            pct(row["test_alert_rate"], 2),
            pct(row["test_recall"]),
            *(pct(row["test_recall_by_scenario"].get(name)) for name in scenarios),
        ]
        for row in curve
    ]
    return [
        "### Recall by alert budget",
        "",
        "If the alert-rate cap moved: the review threshold each budget gives on the validation "
        "scores (validation recall), carried to this model as the thresholds are (raised when "
        "it would alert on more than the budget of the days before the test), and what that "
        "threshold achieved on the test period (recall of review + decline, overall and per "
        "scenario).",
        "",
        *table(
            [
                "alert budget",
                "review threshold",
                "validation recall",
                "test alert rate",
                "test recall",
                *scenarios,
            ],
            rows,
        ),
        "",
    ]
