"""Simulator subcommands for the `fraud` CLI: `simulate` (history files) and `produce` (live)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import typer

from fraud.cli.options import day_progress, stderr_console
from fraud.settings import Settings
from simulator.defaults import (
    DEFAULT_CUSTOMERS,
    DEFAULT_DAYS,
    DEFAULT_SEED,
    DEFAULT_START,
    LIVE_START,
)


def _parse_start(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"expected a date YYYY-MM-DD, got {text!r}", param_hint="--start"
        ) from None


def _parse_moment(text: str) -> dt.date | dt.datetime:
    """YYYY-MM-DD (UTC midnight) or an ISO 8601 time with Z or an offset."""
    try:
        if "T" not in text:
            return dt.date.fromisoformat(text)
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise typer.BadParameter(
            f"expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC, or with an offset), got {text!r}",
            param_hint="--start",
        )
    return moment


def _parse_scenarios(text: str | None) -> tuple[str, ...]:
    from simulator.scenarios import parse_scenarios

    try:
        return parse_scenarios(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scenarios") from None


def simulate(
    ctx: typer.Context,
    customers: int = typer.Option(DEFAULT_CUSTOMERS, min=1, help="Number of customers."),
    days: int = typer.Option(DEFAULT_DAYS, min=1, help="Number of days of history."),
    seed: int = typer.Option(DEFAULT_SEED, help="Random seed: same seed, same bytes."),
    out: Path = typer.Option(None, help="Output folder (default: data/history)."),
    start: str = typer.Option(DEFAULT_START.isoformat(), help="First day (UTC), YYYY-MM-DD."),
    scenarios: str = typer.Option(
        None,
        help="Comma-separated fraud scenarios to include (default: the six history scenarios; "
        "atm_cashout is kept back for drift experiments).",
    ),
) -> None:
    """Write a labelled transaction history (Parquet + CSV), customers and a manifest."""
    import time

    from rich.console import Console
    from rich.table import Table

    from simulator.history import write_history

    first_day = _parse_start(start)
    chosen = _parse_scenarios(scenarios)
    settings: Settings = ctx.obj
    folder = out if out is not None else settings.data_dir / "history"
    if folder.exists() and not folder.is_dir():
        raise typer.BadParameter(f"{folder} exists and is not a folder", param_hint="--out")

    console = stderr_console()
    began = time.perf_counter()
    with day_progress(console, "simulating days", days) as on_day:
        manifest = write_history(
            folder,
            customers=customers,
            days=days,
            seed=seed,
            start=first_day,
            scenarios=chosen,
            on_day=on_day,
        )
    seconds = time.perf_counter() - began

    rows = manifest["rows"]["transactions"]
    table = Table(title=f"history written to {folder}")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("period", f"{manifest['start_date']} .. {manifest['end_date']}")
    table.add_row("customers / cards", f"{customers:,} / {manifest['rows']['cards']:,}")
    table.add_row("transactions", f"{rows:,}")
    table.add_row("fraud rate", f"{manifest['fraud_rate']:.3%}")
    for name, count in manifest["fraud_by_scenario"].items():
        table.add_row(f"  {name}", f"{count:,}")
    table.add_row("time", f"{seconds:.1f} s ({rows / max(seconds, 1e-9):,.0f} rows/s)")
    Console().print(table)


def produce(
    ctx: typer.Context,
    rate: float = typer.Option(2000.0, min=0.001, help="Events per second."),
    duration: float = typer.Option(10.0, min=0.001, help="Seconds to run."),
    scenario: str = typer.Option(
        None, help="Inject one more fraud scenario (e.g. atm_cashout, unseen in history)."
    ),
    scenario_at: float = typer.Option(
        None, min=0.0, help="Seconds into the run when --scenario starts (default 0)."
    ),
    seed: int = typer.Option(DEFAULT_SEED, help="Seed of the bank (same as the history's)."),
    customers: int = typer.Option(DEFAULT_CUSTOMERS, min=1, help="Customers of the bank."),
    start: str = typer.Option(
        LIVE_START.isoformat(),
        help="Simulated time of the first event (UTC): YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ. The "
        "default continues the default history, the day after its last.",
    ),
    malformed_rate: float = typer.Option(
        0.0, min=0.0, max=1.0, help="Share of malformed events (dead-letter testing)."
    ),
    topic: str = typer.Option(None, help="Transactions topic (default: FRAUD_TOPIC_TRANSACTIONS)."),
    truth_topic: str = typer.Option(None, help="Ground-truth topic (default: FRAUD_TOPIC_TRUTH)."),
    bootstrap: str = typer.Option(None, help="Kafka bootstrap servers (default: settings)."),
    broker_timeout: float = typer.Option(5.0, min=0.1, help="Seconds to wait for the broker."),
) -> None:
    """Publish live simulated transactions, paced to --rate, with ground truth beside them.

    Each event carries its own simulated time as timestamp: the bank's day runs as fast as
    --rate asks (at 300/s a day of 5,000 customers takes under a minute), so that a card's
    transactions are spaced in event time as in the history. Malformed events (invalid JSON, a missing field, a forbidden value, a raw card number
    as card_id) get no ground-truth record.
    """
    from simulator.bank import Bank
    from simulator.live import LiveTraffic
    from simulator.produce import produce_live
    from simulator.scenarios import DEFAULT_SCENARIOS, SCENARIOS

    if scenario is not None and scenario not in SCENARIOS:
        raise typer.BadParameter(
            f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}", param_hint="--scenario"
        )
    if scenario in DEFAULT_SCENARIOS:
        raise typer.BadParameter(
            f"{scenario!r} already runs in live traffic; inject one that does not (atm_cashout)",
            param_hint="--scenario",
        )
    if scenario_at is not None and scenario is None:
        raise typer.BadParameter("--scenario-at needs --scenario", param_hint="--scenario-at")
    first_moment = _parse_moment(start)
    settings: Settings = ctx.obj
    traffic = LiveTraffic(
        Bank.build(customers, seed), seed, scenario, scenario_at, start=first_moment
    )
    kafka = settings.kafka
    if bootstrap:
        kafka = replace(kafka, bootstrap=bootstrap)
    report = produce_live(
        kafka,
        traffic,
        rate=rate,
        duration_s=duration,
        topic=topic or settings.topics.transactions,
        truth_topic=truth_topic or settings.topics.truth,
        malformed_rate=malformed_rate,
        seed=seed,
        partitions=settings.topic_partitions,
        broker_timeout_s=broker_timeout,
    )
    summary = report.as_dict()
    typer.echo(
        f"sent {report.sent} events in {report.send_seconds:.2f} s: "
        f"{report.achieved_rate:.1f} events/s (asked {rate:g}, "
        f"{report.achieved_rate / rate:.1%}); delivered {report.delivered}, "
        f"delivery errors {report.delivery_errors}"
    )
    typer.echo(
        f"valid {report.valid}, fraud {report.fraud} {summary['by_scenario']}, "
        f"malformed {sum(report.malformed.values())} {summary['malformed']}"
    )
    if report.simulated_from is not None:
        typer.echo(f"simulated time {report.simulated_from} .. {report.simulated_to}")
    if scenario is not None:
        started = report.scenario_started_after_s
        when = f"after {started} s" if started is not None else "never (run ended first)"
        typer.echo(f"scenario {scenario} started {when}")
    if report.delivery_errors:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add the simulator's commands to the top-level app."""
    app.command()(simulate)
    app.command()(produce)
