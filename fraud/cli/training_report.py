"""Console tables for `fraud train` and `fraud backtest`: evaluation, search, carry-over, curve.

Plain functions from a training summary (`TrainingOutcome.summary()`, JSON-able data) to rich
tables or lines; nothing here trains or reads files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def pct(value: Any, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def num(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _tier(tier: str, measure: str) -> Callable[[dict[str, Any]], Any]:
    return lambda evaluation: evaluation["tiers"][tier][measure]


def evaluation_table(title: str, columns: Mapping[str, dict[str, Any] | None]) -> Any:
    """One column per model (name -> its evaluation of the window; None columns are left out)."""
    from rich.table import Table

    present = {name: evaluation for name, evaluation in columns.items() if evaluation is not None}
    table = Table(title=title)
    table.add_column("metric")
    for name in present:
        table.add_column(name, justify="right")

    def add(label: str, get: Callable[[dict[str, Any]], Any], fmt: Callable[[Any], str]) -> None:
        table.add_row(label, *(fmt(get(evaluation)) for evaluation in present.values()))

    add("transactions / fraud", lambda e: f"{e['transactions']} / {e['fraud']}", str)
    add("average precision", lambda e: e["average_precision"], num)
    add("ROC AUC", lambda e: e["roc_auc"], num)
    add("card precision@100 per day", lambda e: e["card_precision_at_100"], num)
    add("alert rate", lambda e: e["alert_rate"], lambda v: pct(v, 2))
    for tier in ("decline", "review", "alert"):
        for measure in ("precision", "recall"):
            add(f"{tier} {measure}", _tier(tier, measure), pct)
    first = next(iter(present.values()), None)
    for row in first["scenarios"] if first else []:
        name = row["scenario"]
        cells = []
        for evaluation in present.values():
            found = {r["scenario"]: r for r in evaluation.get("scenarios", [])}.get(name)
            cells.append(
                f"{pct(found['recall_alert'])} of {found['fraud']}" if found is not None else "n/a"
            )
        table.add_row(f"recall: {name}", *cells)
    add("Brier score", lambda e: e["calibration"]["brier"], lambda v: num(v, 5))
    return table


def search_table(search: dict[str, Any]) -> Any:
    """The trials of the out-of-time search, the chosen one marked."""
    from rich.table import Table

    from training.governance import trial_cells

    folds = len(search["folds"])
    table = Table(title=f"hyper-parameter search: mean average precision on {folds} fold(s)")
    for column in ("trial", "parameters", "mean AP", "AP per fold", "fit s"):
        table.add_column(column, justify="left" if column == "parameters" else "right")
    for trial in search["trials"]:
        mark = " *" if trial["number"] == search["chosen_trial"] else ""
        table.add_row(f"{trial['number']}{mark}", *trial_cells(trial, " "))
    return table


def carry_over_line(check: dict[str, Any] | None) -> str:
    """Whether thresholds chosen on earlier folds held on the last fold's (longer-trained) model."""
    if check is None:
        return "not checked (a single fold)"
    achieved = check["achieved"]
    chosen = ", ".join(str(fold) for fold in check["chosen_on_folds"])
    return (
        f"thresholds from fold(s) {chosen} on fold {check['applied_to_fold']}'s model: "
        f"{achieved['declined']} declines at {pct(achieved['decline_precision'])} precision "
        f"(target {pct(check['decline_precision_target'], 0)}), alert rate "
        f"{pct(achieved['alert_rate'], 2)}, alert recall {pct(achieved['alert_recall'])}"
    )


def curve_table(curve: list[dict[str, Any]]) -> Any:
    """Recall for each alert budget, its threshold set on validation and read on the test."""
    from rich.table import Table

    table = Table(title="recall by alert budget (threshold from validation, read on the test)")
    scenarios = sorted({name for row in curve for name in row["test_recall_by_scenario"]})
    for column in ("budget", "review threshold", "validation recall", "test alert rate"):
        table.add_column(column, justify="right")
    table.add_column("test recall", justify="right")
    for name in scenarios:
        table.add_column(name, justify="right")
    for row in curve:
        table.add_row(
            pct(row["alert_rate_budget"]),
            f"{row['review_threshold']:.4g}",
            pct(row["validation_recall"]),
            pct(row["test_alert_rate"], 2),
            pct(row["test_recall"]),
            *(pct(row["test_recall_by_scenario"].get(name)) for name in scenarios),
        )
    return table


def split_line(split: dict[str, Any]) -> str:
    """Where the model learned, where its thresholds were chosen, and the test."""
    day = lambda key: str(split[key])[:10]  # noqa: E731 - a local shorthand
    test = f"test {day('test_from')}..{day('test_to')}"
    if not split.get("refit"):
        return (
            f"train {day('train_from')}..{day('train_to')}, validation "
            f"{day('validation_from')}..{day('validation_to')}, {test}"
        )
    return (
        f"refit on {day('train_from')}..{day('train_to')}; thresholds and search out of time on "
        f"{day('validation_from')}..{day('validation_to')}; {test}"
    )
