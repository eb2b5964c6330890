"""How far a simulated history's own information takes detection: the features beside an oracle.

    python -m bench.detection                          # the default history, data/history
    python -m bench.detection --history other/history  # any history the simulator wrote

Fits the production estimator (gradient boosting with its default parameters, learning from every
fraud and the training's 25% genuine sample) on the default split's training window (every
labelled day before the test period) and scores the test period, twice:
- on FEATURE_NAMES, what the stream computes;
- on FEATURE_NAMES plus four facts that only the simulator knows (its hidden state, rebuilt from
  the history's manifest: same customers, same seed): whether the terminal is one of the
  customer's favourite shops or sites, whether the device is one the customer owns, the amount
  against the customer's true typical amount for the merchant category, and the customer's true
  daily rate of purchases.
No model in production can know those facts: what the second fit reaches bounds what better
features of the same design could reach. Reported for both: average precision, recall when the
highest-scored x% of the test period is alerted (overall and per scenario), and the average
precision that ranking every other scenario's frauds first would give (how much of the gap is
the scenarios other than `mimicry`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from sklearn.metrics import average_precision_score

from fraud.errors import ConfigError, ValidationError
from simulator.bank import Bank
from simulator.catalog import MCC_MEAN_AMOUNT
from stream.features import CATEGORICAL_FEATURES, DEFAULT_LABEL_DELAY, FEATURE_NAMES
from training.data import default_split, feature_spec, labelled_features, read_history
from training.evaluation import threshold_for_alert_rate
from training.model import DEFAULT_KIND, fit_model, fraud_scores, genuine_sample

ORACLE_FEATURES: tuple[str, ...] = (
    "oracle_favourite_terminal",
    "oracle_own_device",
    "oracle_log_amount_to_typical",
    "oracle_daily_rate",
)
GENUINE_SHARE = 0.25  # as `fraud train` (its --genuine-share default)
BUDGETS = (0.02, 0.05, 0.10)
SEED = 1


@dataclass(frozen=True)
class FitResult:
    name: str
    average_precision: float
    average_precision_others_first: float
    recall: dict[float, float]  # budget -> recall of every fraud
    recall_by_scenario: dict[float, dict[str, float]]  # budget -> scenario -> recall


def oracle_features(history: pd.DataFrame, bank: Bank) -> pd.DataFrame:
    """ORACLE_FEATURES of each history row (index aligned), from the bank that generated it."""
    customer_index = {name: i for i, name in enumerate(bank.customer_ids.to_pylist())}
    terminal_index = {name: i for i, name in enumerate(bank.terminal_ids.to_pylist())}
    customer = history["customer_id"].map(customer_index)
    terminal = history["terminal_id"].map(terminal_index)
    if customer.isna().any() or terminal.isna().any():
        raise ValidationError(
            "the history names customers or terminals its manifest's bank does not have",
            field="customer_id",
        )
    customer_ids = customer.to_numpy(dtype=np.int64)
    terminal_ids = terminal.to_numpy(dtype=np.int64)
    channel = history["channel"].to_numpy()
    favourite = np.zeros(len(history), dtype=bool)
    for name, regulars in (("pos", bank.favourite_shops), ("ecom", bank.favourite_sites)):
        rows = channel == name
        favourite[rows] = (regulars[customer_ids[rows]] == terminal_ids[rows, None]).any(axis=1)
    # A customer's own devices are 2 * customer + k for k < device_count (simulator.bank).
    owned = np.concatenate(
        [2 * np.flatnonzero(bank.device_count > k) + k for k in range(int(bank.device_count.max()))]
    )
    own_tokens = {token for token in bank.device_ids(owned) if token is not None}
    device = history["device_id"]
    own_device = np.where(device.isna(), np.nan, device.isin(own_tokens).astype(float))
    typical = MCC_MEAN_AMOUNT[bank.terminal_mcc[terminal_ids]] * bank.amount_scale[customer_ids]
    return pd.DataFrame(
        {
            "oracle_favourite_terminal": favourite.astype(float),
            "oracle_own_device": own_device,
            "oracle_log_amount_to_typical": np.log(history["amount"].to_numpy() / typical),
            "oracle_daily_rate": bank.daily_rate[customer_ids],
        },
        index=history.index,
    )


def _fit_and_score(
    name: str, train: pd.DataFrame, test: pd.DataFrame, columns: list[str]
) -> FitResult:
    keep, weights = genuine_sample(train["transaction_id"], train["is_fraud"], GENUINE_SHARE, SEED)
    rows = train[keep]
    model = fit_model(
        DEFAULT_KIND,
        rows[columns],
        rows["is_fraud"],
        list(CATEGORICAL_FEATURES),
        SEED,
        sample_weight=weights,
    )
    scores = fraud_scores(model, test[columns])
    fraud = test["is_fraud"].to_numpy() == 1
    scenario = test["fraud_scenario"].fillna("genuine").to_numpy()
    others_first = scores.copy()
    others_first[fraud & (scenario != "mimicry")] = scores.max() + 1.0
    recall: dict[float, float] = {}
    by_scenario: dict[float, dict[str, float]] = {}
    for budget in BUDGETS:
        alerted = scores >= threshold_for_alert_rate(scores, budget)
        recall[budget] = float(alerted[fraud].mean())
        by_scenario[budget] = {
            name: float(alerted[scenario == name].mean())
            for name in sorted(set(scenario[fraud].tolist()))
        }
    return FitResult(
        name,
        float(average_precision_score(fraud, scores)),
        float(average_precision_score(fraud, others_first)),
        recall,
        by_scenario,
    )


def run_study(history_dir: Path) -> tuple[list[FitResult], dict[str, int]]:
    """Both fits on the history in `history_dir` (a simulator's output, with its manifest)."""
    manifest_path = history_dir / "manifest.json"
    if not manifest_path.exists():
        raise ConfigError(
            f"{manifest_path} not found: simulate a history first (`make simulate`, or "
            f"`fraud simulate --out {history_dir}`)"
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("generator") != "simulator":
        raise ConfigError(f"{history_dir} was not written by the simulator: no oracle to rebuild")
    history = read_history(history_dir / "transactions.parquet")
    if "fraud_scenario" not in history.columns:
        raise ValidationError("the history has no fraud_scenario column", field="fraud_scenario")
    bank = Bank.build(int(manifest["parameters"]["customers"]), int(manifest["seed"]))
    history = history.sort_values(["timestamp", "transaction_id"], kind="stable")
    history = history.reset_index(drop=True)
    data = labelled_features(history, DEFAULT_LABEL_DELAY, feature_spec())
    data = pd.concat([data, oracle_features(history, bank)], axis=1)
    split = default_split(data["timestamp"], DEFAULT_LABEL_DELAY)
    train = data[split.mask(data["timestamp"], "train")]
    test = data[split.mask(data["timestamp"], "test")]
    features = list(FEATURE_NAMES)
    results = [
        _fit_and_score("features", train, test, features),
        _fit_and_score("+ oracle", train, test, [*features, *ORACLE_FEATURES]),
    ]
    counts = test["fraud_scenario"].dropna().value_counts().sort_index()
    return results, {str(name): int(count) for name, count in counts.items()}


def _report(results: list[FitResult], frauds: dict[str, int], console: Console) -> None:
    table = Table(
        title="Detection on the test period",
        caption="features: what the stream computes; + oracle: and the simulator's hidden "
        "facts (favourite terminal, own device, amount to the true typical, true daily rate)",
    )
    table.add_column("measure")
    for result in results:
        table.add_column(result.name, justify="right")
    table.add_row("average precision", *(f"{r.average_precision:.4f}" for r in results))
    table.add_row(
        "  if the other scenarios ranked first",
        *(f"{r.average_precision_others_first:.4f}" for r in results),
    )
    for budget in BUDGETS:
        table.add_row(
            f"recall, top {budget:.0%} alerted", *(f"{r.recall[budget]:.1%}" for r in results)
        )
        for scenario, count in frauds.items():
            table.add_row(
                f"  {scenario} ({count})",
                *(f"{r.recall_by_scenario[budget].get(scenario, 0.0):.1%}" for r in results),
            )
    console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--history", type=Path, default=Path("data/history"), help="folder of a simulated history"
    )
    args = parser.parse_args(argv)
    console = Console()
    try:
        results, frauds = run_study(args.history)
    except (ConfigError, ValidationError) as exc:
        console.print(f"[red]bench.detection: {exc}[/red]")
        return 2
    _report(results, frauds, console)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
