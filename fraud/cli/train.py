"""Training subcommands: train, backtest, promote, model-card, validate.

Heavy imports happen inside the commands so that `fraud --help` stays instant.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import typer

from fraud.cli.options import (
    CUSTOMERS_FILE,
    DATA,
    DECLINE_CONFIDENCE,
    FAIRNESS_BAND,
    FAIRNESS_MIN_EVENTS,
    FOLDS,
    GENUINE_SHARE,
    JOBS,
    LABEL_DELAY_DAYS,
    MAX_ALERT_RATE,
    SEARCH_TRIALS,
    THREADS,
    day_progress,
    decline_confidence,
    existing_file,
    parse_band,
    stderr_console,
    step,
)
from fraud.cli.training_report import (
    carry_over_line,
    curve_table,
    evaluation_table,
    pct,
    search_table,
    split_line,
)
from fraud.errors import InputError
from fraud.settings import PROJECT_ROOT, Settings

# What `--simulate` writes a history as (beside the customers table and a manifest).
HISTORY_FILES = ("transactions.parquet", "transactions.csv")


def _check_history_path(data: Path, simulate: bool) -> None:
    """Before anything is read or written: the history exists, or may be simulated there."""
    if data.is_file():
        return
    if data.exists():
        raise InputError(f"--data {data} is not a file")
    if not simulate:
        raise InputError(
            f"history file {data} not found: check the path, or add --simulate to write a "
            "simulated history there"
        )
    if data.name not in HISTORY_FILES:
        raise InputError(
            f"--simulate writes {' and '.join(HISTORY_FILES)}; --data {data} names neither"
        )


def _print_training(console: Any, result: dict[str, Any]) -> None:
    """The search, the carry-over check, the test evaluation and the alert-budget curve."""
    if result.get("search"):
        console.print(search_table(result["search"]))
    if result.get("design") == "refit":
        console.print("carry-over check: " + carry_over_line(result.get("carry_over_check")))
    split = result["split"]
    columns = {"gradient boosting": result["evaluation"]["test"]}
    if result.get("baseline"):
        columns["random forest (baseline)"] = result["baseline"]["evaluation"]["test"]
    if result.get("previous_design"):
        columns["previous design"] = result["previous_design"]["evaluation"]["test"]
    title = f"Test period {split['test_from'][:10]} to {split['test_to'][:10]} (exclusive)"
    console.print(evaluation_table(title, columns))
    if result.get("alert_rate_curve"):
        console.print(curve_table(result["alert_rate_curve"]))


def _print_validation(console: Any, report: Any) -> None:
    for line in report.summary_lines():
        console.print(("[red]" if "[error]" in line else "") + line.replace("[", "\\["))


def _display_path(path: Path) -> str:
    """Paths inside the project are recorded relative to it, so records do not depend on
    where the checkout lives."""
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path.resolve())


def _fairness_line(fairness: dict[str, Any] | None) -> str:
    if fairness is None:
        return "not audited (no customers table)"
    verdict = "passed" if fairness["passed"] else "FAILED"
    warned = [name for name, result in fairness["attributes"].items() if result["warning"]]
    return verdict + (f" (warning: {', '.join(warned)})" if warned else "")


def _champion_line(decision: Any) -> str:
    if decision is None:
        return "not attempted (--no-promote)"
    if decision.promoted:
        return f"v{decision.champion_after} (promoted now" + (
            ", FORCED)" if decision.forced else ")"
        )
    failed = ", ".join(gate.name for gate in decision.gates if not gate.passed)
    current = f"v{decision.champion_after}" if decision.champion_after else "none"
    return f"{current} (unchanged: gate(s) failed: {failed})"


def train_command(
    ctx: typer.Context,
    data: Path = DATA,
    customers_file: Path = CUSTOMERS_FILE,
    simulate: bool = typer.Option(
        None,
        "--simulate/--no-simulate",
        help="Simulate a history when the file is missing (default: only for the default path).",
    ),
    sim_customers: int = typer.Option(5000, min=1, help="Customers to simulate when missing."),
    sim_days: int = typer.Option(60, min=1, help="Days to simulate when missing."),
    sim_seed: int = typer.Option(1, help="Simulator seed when missing."),
    seed: int = typer.Option(1, help="Model seed: same data + seed give the same metrics."),
    label_delay_days: int = LABEL_DELAY_DAYS,
    test_days: int = typer.Option(10, min=1, help="Days in the test window (the last ones)."),
    validation_days: int = typer.Option(
        15,
        min=1,
        help="Days whose out-of-time scores choose the thresholds: shared by the folds (the "
        "last days of the training window), or the holdout's validation window with --folds 0.",
    ),
    warmup_days: int = typer.Option(7, min=0, help="First days only replayed, not trained on."),
    folds: int = FOLDS,
    search_trials: int = SEARCH_TRIALS,
    genuine_share: float = GENUINE_SHARE,
    previous_design: bool = typer.Option(
        True,
        help="Also run the previous design (holdout, default parameters, no card habit "
        "features) on the same test rows, for a before/after comparison on the model card.",
    ),
    max_alert_rate: float = MAX_ALERT_RATE,
    decline_confidence_: float = DECLINE_CONFIDENCE,
    max_rejected_share: float = typer.Option(
        0.001, min=0.0, max=1.0, help="Data gate: rejected-row share allowed."
    ),
    fairness_band: str = FAIRNESS_BAND,
    fairness_min_events: float = FAIRNESS_MIN_EVENTS,
    baseline: bool = typer.Option(True, help="Also train the RandomForest baseline."),
    threads: int = THREADS,
    jobs: int = JOBS,
    promote_: bool = typer.Option(
        True, "--promote/--no-promote", help="Promote if the gates pass."
    ),
    results_dir: Path = typer.Option(None, help="Step results as JSON (default: .state/train)."),
    model_card: Path = typer.Option(
        PROJECT_ROOT / "model_card.md", help="Where to write the model card."
    ),
) -> None:
    """Simulate (if missing), validate, train, evaluate, register, promote, write the model card."""
    from rich.table import Table

    from training import workflow
    from training.data import check_readable, default_split
    from training.evaluation import configured_gate
    from training.governance import DataInfo, file_sha256, log_training_run, promote, render
    from training.model import PolicyTargets

    settings: Settings = ctx.obj
    settings.signing_key()  # production without a signing key: refused before any work
    console = stderr_console()
    began = time.perf_counter()
    default_data = settings.data_dir / "history" / "transactions.parquet"
    data = data or default_data
    results = workflow.StepLog(results_dir or settings.state_dir / "train")
    delay = timedelta(
        days=settings.label_delay_days if label_delay_days is None else label_delay_days
    )
    band = None if fairness_band is None else parse_band(fairness_band)
    confidence = decline_confidence(decline_confidence_)
    fairness_gate = configured_gate(band, fairness_min_events)
    _check_history_path(data, data == default_data if simulate is None else simulate)
    for path, option in ((data, "--data"), (customers_file, "--customers-file")):
        if path is not None and path.is_file():
            check_readable(path)
        elif path is not None and option == "--customers-file":
            existing_file(path, option)

    started = time.perf_counter()
    if data.is_file():
        outcome_sim: dict[str, Any] = {"simulated": False, "path": str(data)}
    else:
        from simulator import write_history

        with day_progress(console, f"simulating {data.parent}", sim_days) as on_day:
            manifest = write_history(
                data.parent, customers=sim_customers, days=sim_days, seed=sim_seed, on_day=on_day
            )
        outcome_sim = {"simulated": True, "path": str(data), "manifest": manifest}
    console.print(
        f"[green]done[/] history: {'simulated' if outcome_sim['simulated'] else 'found'} {data}"
    )
    results.record("simulate", outcome_sim, time.perf_counter() - started)

    with step(console, "validate history") as elapsed:
        validated = workflow.load_and_validate(data, max_rejected_share, results.folder)
    _print_validation(console, validated.report)
    results.record("validate", validated.report.to_dict(), elapsed())

    with step(
        console, f"replay {len(validated.frame):,} transactions through the stream features"
    ) as elapsed:
        labelled, spec = workflow.build_features(validated, delay)
    results.record("features", {"rows": len(labelled), "features": list(spec.names)}, elapsed())

    split = default_split(
        labelled["timestamp"], delay, test_days, validation_days, warmup_days, folds
    )
    customers_path = customers_file or workflow.customers_path_for(data)
    groups, group_info = workflow.load_groups(customers_path, labelled, split.test_from)
    design = (
        f"search {search_trials} setting(s) on {folds} folds, refit on every labelled day"
        if folds
        else "holdout"
    )
    with step(console, f"train ({design}), choose thresholds, evaluate, audit") as elapsed:
        outcome = workflow.train(
            labelled,
            spec,
            delay,
            groups,
            seed=seed,
            targets=PolicyTargets(max_alert_rate=max_alert_rate, decline_confidence=confidence),
            fairness_gate=fairness_gate,
            split=split,
            with_baseline=baseline,
            threads=threads,
            search_trials=search_trials,
            genuine_share=genuine_share,
            previous_design=previous_design,
            jobs=jobs,
        )
    train_result = {**workflow.training_result(outcome), **group_info}
    results.record("train", train_result, elapsed())

    with step(console, "log to MLflow and register") as elapsed:
        info = DataInfo(
            source=_display_path(data),
            sha256=file_sha256(data),
            rows=len(validated.frame),
            validation=validated.report.to_dict(),
            customers_source=None if customers_path is None else str(customers_path),
        )
        registered = log_training_run(settings, outcome, info)
    results.record("register", registered.__dict__, elapsed())

    decision = None
    if promote_:
        with step(console, "promotion gates") as elapsed:
            decision = promote(settings, registered.version)
        results.record("promote", decision.to_dict(), elapsed())
        for gate in decision.gates:
            mark = "[green]pass[/]" if gate.passed else "[red]FAIL[/]"
            console.print(f"  gate {gate.name}: {mark} - {gate.detail}")

    card_written = None
    with step(console, "model card") as elapsed:
        try:
            # Without a champion (gates failed) the card describes the new challenger, marked
            # as not in production, so that the reasons are on paper.
            model_card.write_text(render(settings, fallback="challenger"), encoding="utf-8")
            card_written = str(model_card)
        except Exception as exc:  # noqa: BLE001 - no champion yet is reported, not fatal
            console.print(f"[yellow]model card not written: {exc}[/]")
    results.record("model_card", {"path": card_written}, elapsed())

    _print_training(console, train_result)
    targets = outcome.targets_on_test
    summary = Table(title="fraud train: summary")
    summary.add_column("item")
    summary.add_column("value")
    thresholds = outcome.default.threshold_choice.thresholds
    rows = [
        (
            "history",
            f"{data} ({validated.report.rows_kept:,} rows kept, {validated.report.rows_rejected} rejected)",
        ),
        ("split", split_line(train_result["split"])),
        ("thresholds", f"review {thresholds.review:.4g}, decline {thresholds.decline:.4g}"),
        (
            "decline precision (target 95%)",
            f"{pct(targets['decline_precision'])} - {'met' if targets['decline_precision_met'] else 'NOT met'}",
        ),
        (
            "recall (target 90%)",
            f"{pct(targets['recall'])} - {'met' if targets['recall_met'] else 'NOT met'}",
        ),
        ("fairness gate", _fairness_line(outcome.fairness)),
        ("registered", f"{registered.name} v{registered.version} (@challenger)"),
        ("champion", _champion_line(decision)),
        ("model card", card_written or "not written"),
        ("results", str(results.folder)),
        ("time", f"{time.perf_counter() - began:.0f}s"),
    ]
    for item, value in rows:
        summary.add_row(item, value)
    console.print(summary)
    results.record("summary", {k: v for k, v in rows}, time.perf_counter() - began)


def backtest_command(
    ctx: typer.Context,
    data: Path = typer.Option(..., help="History file (.parquet or .csv) with is_fraud."),
    train_from: str = typer.Option(..., help="First training day, YYYY-MM-DD (inclusive)."),
    train_to: str = typer.Option(..., help="Last training day, YYYY-MM-DD (inclusive)."),
    test_from: str = typer.Option(
        ..., help="First test day (at least the label delay after --train-to)."
    ),
    test_to: str = typer.Option(..., help="Last test day, YYYY-MM-DD (inclusive)."),
    label_delay_days: int = LABEL_DELAY_DAYS,
    out: Path = typer.Option(Path("scores.csv"), help="Output CSV: transaction_id,score."),
    seed: int = typer.Option(1, help="Model seed."),
    max_alert_rate: float = typer.Option(
        0.02, min=0.0, max=1.0, help="Alert-rate cap for the thresholds."
    ),
    decline_confidence_: float = DECLINE_CONFIDENCE,
    folds: int = FOLDS,
    search_trials: int = SEARCH_TRIALS,
    genuine_share: float = GENUINE_SHARE,
    threads: int = THREADS,
    jobs: int = JOBS,
) -> None:
    """Train the default pipeline on a window of any history file and score a later window.

    Features come from replaying the whole file in time order. The model learns from the whole
    training window; hyper-parameters and thresholds are chosen out of time on folds in its
    last quarter (with --folds 0: it learns on the start of the window and its last quarter,
    after a label-delay gap, chooses the thresholds).
    """
    from training import workflow
    from training.data import check_readable
    from training.model import PolicyTargets
    from training.results import write_json

    settings: Settings = ctx.obj
    console = stderr_console()
    confidence = decline_confidence(decline_confidence_)
    delay = timedelta(
        days=settings.label_delay_days if label_delay_days is None else label_delay_days
    )
    split = workflow.backtest_window_split(
        train_from, train_to, test_from, test_to, delay, folds=folds
    )
    check_readable(data)
    with step(console, f"validate {data}"):
        validated = workflow.load_and_validate(data, max_rejected_share=1.0)
    _print_validation(console, validated.report)
    with step(console, f"replay {len(validated.frame):,} transactions"):
        labelled, spec = workflow.build_features(validated, delay)
    with step(console, "train and score"):
        outcome = workflow.train(
            labelled,
            spec,
            delay,
            groups=None,
            seed=seed,
            targets=PolicyTargets(max_alert_rate=max_alert_rate, decline_confidence=confidence),
            split=split,
            with_baseline=False,
            threads=threads,
            search_trials=search_trials,
            genuine_share=genuine_share,
            jobs=jobs,
            test_needs_fraud=False,
        )
    scores = workflow.backtest_scores(outcome)
    out.parent.mkdir(parents=True, exist_ok=True)
    scores.to_csv(out, index=False)
    result = workflow.training_result(outcome)
    write_json(out.with_suffix(".json"), result)
    s = outcome.split
    console.print(
        f"model trained on [{s.train_from.date()}, {s.train_to.date()}), thresholds chosen on "
        f"[{s.validation_from.date()}, {s.validation_to.date()})"
        + (" out of time on its folds" if s.refit else "")
        + f", tested on [{s.test_from.date()}, {s.test_to.date()})"
    )
    if outcome.dropped_features:
        console.print(
            "features empty in this history, left out: " + ", ".join(outcome.dropped_features)
        )
    _print_training(console, result)
    typer.echo(f"wrote {len(scores):,} scores to {out} (evaluation: {out.with_suffix('.json')})")


def promote_command(
    ctx: typer.Context,
    version: str = typer.Option(None, help="Model version (default: the one at @challenger)."),
    force: bool = typer.Option(False, help="Promote even if a gate fails (needs --reason)."),
    reason: str = typer.Option(
        None, help="Why the gates are overridden (recorded on the version)."
    ),
    tolerance: float = typer.Option(
        0.0, min=0.0, help="Allowed drop in average precision vs the champion."
    ),
) -> None:
    """Move @champion to a version when the gates pass (or with --force --reason)."""
    from training.governance import promote

    settings: Settings = ctx.obj
    console = stderr_console()
    decision = promote(settings, version, force=force, reason=reason, tolerance=tolerance)
    for gate in decision.gates:
        mark = "[green]pass[/]" if gate.passed else "[red]FAIL[/]"
        console.print(f"gate {gate.name}: {mark} - {gate.detail}")
    if decision.forced:
        console.print(f"[yellow]@champion -> v{decision.version} FORCED: {reason}[/]")
    elif decision.promoted:
        console.print(f"[green]@champion -> v{decision.version}[/]")
    else:
        console.print(
            f"[red]refused: @champion stays at {'v' + decision.previous_champion if decision.previous_champion else 'nothing'}[/]"
        )
        raise typer.Exit(1)


def model_card_command(
    ctx: typer.Context,
    out: Path = typer.Option(PROJECT_ROOT / "model_card.md", help="Where to write the card."),
    alias: str = typer.Option("champion", help="Alias of the version to describe."),
) -> None:
    """Write the model card of the champion from its registry metadata (with its retraining
    from feedback, when it was retrained)."""
    from training.governance import render
    from training.retrain import retraining_card_section

    settings: Settings = ctx.obj
    out.write_text(
        render(settings, alias) + retraining_card_section(settings, alias), encoding="utf-8"
    )
    typer.echo(f"wrote {out}")


def validate_command(
    data: Path = typer.Option(..., help="History file (.parquet or .csv)."),
    max_rejected_share: float = typer.Option(
        0.001, min=0.0, max=1.0, help="Rejected-row share allowed."
    ),
    out: Path = typer.Option(None, help="Also write the report as JSON here."),
) -> None:
    """Validate a history file: schema, ranges, duplicates, time order, labels."""
    from training.results import write_json
    from training.workflow import load_and_validate

    console = stderr_console()
    validated = load_and_validate(data, max_rejected_share)
    _print_validation(console, validated.report)
    if out is not None:
        write_json(out, validated.report.to_dict())
    if not validated.report.passed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the training commands to the top-level app."""
    app.command("train")(train_command)
    app.command("backtest")(backtest_command)
    app.command("promote")(promote_command)
    app.command("model-card")(model_card_command)
    app.command("validate-history")(validate_command)
