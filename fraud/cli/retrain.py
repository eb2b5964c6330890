"""`fraud retrain`: labels from feedback + history -> challenger -> gates -> @champion.

Heavy imports happen inside the command so that `fraud --help` stays instant.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from fraud.cli.options import (
    CUSTOMERS_FILE,
    DATA,
    DECLINE_CONFIDENCE,
    FAIRNESS_BAND,
    FAIRNESS_MIN_EVENTS,
    LABEL_DELAY_DAYS,
    MAX_ALERT_RATE,
    THREADS,
    confidence_level,
    decline_confidence,
    existing_file,
    parse_band,
    parse_interval,
    parse_model_params,
    stderr_console,
    step,
)
from fraud.settings import PROJECT_ROOT, Settings


def _num(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _print_result(console: Any, result: Any) -> None:
    from rich.table import Table

    recent = result.recent
    table = Table(
        title=f"Recent labelled window: {recent['rows']:,} transactions, {recent['fraud']} fraud "
        f"({recent['event_time_from'][:19]} .. {recent['event_time_to'][:19]})"
    )
    table.add_column("metric")
    table.add_column(f"challenger v{result.version}", justify="right")
    table.add_column(f"champion v{result.champion_before}", justify="right")
    for label, key, fmt in (
        ("average precision", "average_precision", _num),
        ("ROC AUC", "roc_auc", _num),
        ("alert recall", "alert_recall", _pct),
        ("alert precision", "alert_precision", _pct),
        ("alert rate", "alert_rate", _pct),
    ):
        table.add_row(label, fmt(recent["challenger"][key]), fmt(recent["champion"][key]))
    console.print(table)
    for gate in result.gates:
        mark = "[green]pass[/]" if gate.passed else "[red]FAIL[/]"
        console.print(f"  gate {gate.name}: {mark} - {gate.detail}")

    assembly = result.assembly
    summary = Table(title="fraud retrain: summary")
    summary.add_column("item")
    summary.add_column("value")
    rows = [
        (
            "labelled set",
            f"{assembly['rows']:,} transactions, {assembly['frauds']} fraud, by source "
            f"{assembly['by_source']}; {assembly['conflicts']} conflicting, "
            f"{assembly['too_recent']} too recent, {assembly['without_decision']} without decision",
        ),
        (
            "feedback offsets",
            ", ".join(
                f"p{p}: {r['first']}..{r['last']}"
                for p, r in sorted(assembly["feedback_offsets"].items())
            ),
        ),
        (
            "trained on",
            f"{result.training_rows['history']:,} history rows + "
            f"{result.training_rows['feedback']:,} labelled live rows "
            f"(history windows: {result.split_source})",
        ),
        ("registered", f"v{result.version} (@challenger), digest {result.dataset_digest[:16]}"),
        (
            "champion",
            f"v{result.champion_after} (promoted now)"
            if result.promoted
            else f"v{result.champion_after} (unchanged)",
        ),
    ]
    for item, value in rows:
        summary.add_row(item, value)
    console.print(summary)


def _run_once(settings: Settings, options: Any, model_card: Path | None, results: Path) -> bool:
    """One retrain; True when it ended as asked (promoted, or left for a person)."""
    from training.governance import render
    from training.results import write_json
    from training.retrain import retraining_card_section, run_retrain

    console = stderr_console()
    began = time.perf_counter()
    result = run_retrain(settings, options, lambda label: step(console, label))
    _print_result(console, result)
    if model_card is not None:
        try:
            card = render(settings, fallback="challenger") + retraining_card_section(settings)
            model_card.write_text(card, encoding="utf-8")
            console.print(f"model card: {model_card}")
        except Exception as exc:  # noqa: BLE001 - the registry already holds the outcome
            console.print(f"[yellow]model card not written: {exc}[/]")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = write_json(results / f"{stamp}.json", result.to_dict())
    console.print(f"results: {path} ({time.perf_counter() - began:.0f}s)")
    if result.promoted:
        console.print(f"[green]@champion -> v{result.version}[/] (the worker swaps by itself)")
        return True
    failed = [gate.name for gate in result.gates if not gate.passed]
    if failed:
        console.print(
            f"[red]not promoted: gate(s) {', '.join(failed)} failed; @champion stays at "
            f"v{result.champion_after}[/]"
        )
        return False
    console.print(
        f"[yellow]gates passed; v{result.version} waits at @challenger for "
        f"`fraud promote --version {result.version}`[/]"
    )
    return True


def retrain_command(
    ctx: typer.Context,
    data: Path = DATA,
    customers_file: Path = CUSTOMERS_FILE,
    label_delay_days: int = LABEL_DELAY_DAYS,
    label_delay_seconds: float = typer.Option(
        None,
        min=0.0,
        help="Feedback label delay: only transactions older than this, counted back from the "
        "newest decision's event time (or label), are used (default: the history label delay; "
        "compress it for demos and tests).",
    ),
    test_days: int = typer.Option(
        10, min=1, help="History test days, if not the champion's split."
    ),
    validation_days: int = typer.Option(
        15, min=1, help="History validation days (shared by the folds), likewise."
    ),
    warmup_days: int = typer.Option(7, min=0, help="History warm-up days, likewise."),
    recent_share: float = typer.Option(
        0.3,
        min=0.01,
        max=0.9,
        help="Share of the labelled set (the latest) kept to compare models.",
    ),
    min_labels: int = typer.Option(100, min=1, help="Fewest usable labels from feedback."),
    min_frauds: int = typer.Option(10, min=1, help="Fewest fraud labels."),
    presume_legit: bool = typer.Option(
        True,
        "--presume-legit/--no-presume-legit",
        help="Count decided transactions older than the label delay without feedback as legit.",
    ),
    promote_: bool = typer.Option(
        True,
        "--promote/--no-promote",
        help="Promote when the gates pass (else leave it to `fraud promote`).",
    ),
    tolerance: float = typer.Option(
        0.0,
        min=0.0,
        help="Recent window: the challenger fails when the upper confidence bound of its "
        "average precision minus the champion's is below -TOLERANCE (credibly worse).",
    ),
    recent_confidence: float = typer.Option(
        0.95,
        "--recent-confidence",
        help="Recent window: confidence of that one-sided bound (paired bootstrap of the rows, "
        "stratified by label), in [0.5, 1).",
    ),
    history_tolerance: float = typer.Option(
        0.02,
        min=0.0,
        help="Allowed drop in average precision vs the champion, history test window.",
    ),
    max_alert_rate: float = MAX_ALERT_RATE,
    decline_confidence_: float = DECLINE_CONFIDENCE,
    seed: int = typer.Option(1, help="Model seed."),
    param: list[str] = typer.Option(
        [], "--param", help="Model hyper-parameter NAME=VALUE (repeatable; recorded with the run)."
    ),
    fairness_min_events: float = FAIRNESS_MIN_EVENTS,
    fairness_band: str = FAIRNESS_BAND,
    threads: int = THREADS,
    model_card: Path = typer.Option(
        PROJECT_ROOT / "model_card.md", help="Where to write the model card."
    ),
    results_dir: Path = typer.Option(None, help="Run results as JSON (default: .state/retrain)."),
    every: str = typer.Option(
        None, help="Keep running and retrain on this schedule, e.g. 7d (Ctrl-C to stop)."
    ),
) -> None:
    """Retrain from analyst labels and chargebacks; promote the challenger if the gates pass.

    Exit 0: promoted (or, with --no-promote, gates passed). Exit 1: a gate failed, the
    champion is unchanged. Exit 2: missing input or service, nothing registered.
    """
    from fraud.errors import FraudScorerError
    from training.data import check_readable
    from training.retrain import Minimums, RetrainOptions

    settings: Settings = ctx.obj
    settings.signing_key()  # production without a signing key: refused before any work
    interval = parse_interval(every) if every is not None else None
    options = RetrainOptions(
        history=data or settings.data_dir / "history" / "transactions.parquet",
        customers=customers_file,
        feedback_label_delay=None
        if label_delay_seconds is None
        else timedelta(seconds=label_delay_seconds),
        history_label_delay_days=label_delay_days,
        test_days=test_days,
        validation_days=validation_days,
        warmup_days=warmup_days,
        recent_share=recent_share,
        minimums=Minimums(labels=min_labels, frauds=min_frauds),
        presume_legit=presume_legit,
        promote=promote_,
        recent_tolerance=tolerance,
        recent_confidence=confidence_level(recent_confidence, "--recent-confidence"),
        history_tolerance=history_tolerance,
        max_alert_rate=max_alert_rate,
        decline_confidence=decline_confidence(decline_confidence_),
        seed=seed,
        model_params=parse_model_params(param),
        fairness_min_events=fairness_min_events,
        fairness_band=None if fairness_band is None else parse_band(fairness_band),
        threads=threads,
    )
    check_readable(options.history)
    if customers_file is not None:
        check_readable(existing_file(customers_file, "--customers-file"))
    if options.feedback_label_delay is None and label_delay_days is not None:
        options = _with(options, feedback_label_delay=timedelta(days=label_delay_days))
    results = results_dir or settings.state_dir / "retrain"
    if interval is None:
        if not _run_once(settings, options, model_card, results):
            raise typer.Exit(1)
        return
    console = stderr_console()
    console.print(f"retraining every {interval}; Ctrl-C to stop")
    try:
        while True:
            started = time.monotonic()
            try:
                _run_once(settings, options, model_card, results)
            except FraudScorerError as exc:
                # A failed run leaves the champion as it was; the next one may have what it needs.
                console.print(f"[red]retrain failed, champion untouched: {exc}[/]")
            wake = started + interval.total_seconds()
            console.print(
                "next retrain at "
                + datetime.fromtimestamp(time.time() + wake - time.monotonic(), UTC).isoformat(
                    timespec="seconds"
                )
            )
            time.sleep(max(0.0, wake - time.monotonic()))
    except KeyboardInterrupt:
        console.print("stopped")


def _with(options: Any, **changes: Any) -> Any:
    from dataclasses import replace

    return replace(options, **changes)


def register(app: typer.Typer) -> None:
    """Add `retrain` to the top-level app."""
    app.command("retrain")(retrain_command)
