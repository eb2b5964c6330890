"""Feedback subcommands for the `fraud` CLI: `label` (a person's verdict) and `analyst` (simulated).

Heavy imports happen inside the commands so that `fraud --help` stays instant.
"""

from __future__ import annotations

import typer

from fraud.settings import Settings


def label(
    ctx: typer.Context,
    transaction_id: str = typer.Argument(..., help="Transaction id, as shown in the alert."),
    fraud: bool = typer.Option(False, "--fraud", help="The transaction was fraud."),
    legit: bool = typer.Option(False, "--legit", help="The transaction was genuine."),
    analyst: str = typer.Option(..., "--analyst", help="Your analyst id (letters, digits, ._@-)."),
    note: str = typer.Option(None, "--note", help="Free text kept with the label (max 2000)."),
    at: str = typer.Option(
        None,
        "--at",
        help="When the verdict was reached, ISO 8601 (default: now). On simulated traffic, a "
        "time on the transactions' clock, so the worker's terminal fraud rates count the label.",
    ),
    timeout: float = typer.Option(60.0, min=0.1, help="Seconds allowed for Kafka to answer."),
) -> None:
    """Label a decided transaction fraud or legit; the label goes to the feedback topic.

    The transaction must have a decision on the decisions topic (read from its beginning);
    otherwise nothing is published and the exit code is non-zero. A label dated before its
    transaction is refused.
    """
    from datetime import UTC, datetime

    from fraud.errors import ValidationError
    from fraud.times import parse_utc
    from stream.feedback import build_label, label_transaction

    if fraud == legit:
        raise typer.BadParameter(
            "give exactly one of --fraud or --legit" + (" (not both)" if fraud else ""),
            param_hint="--fraud/--legit",
        )
    verdict = "fraud" if fraud else "legit"
    try:
        labelled_at = datetime.now(UTC) if at is None else parse_utc(at)
    except ValueError:
        raise typer.BadParameter(
            f"{at!r} is not an ISO 8601 time (e.g. 2026-03-02T14:05:00Z)", param_hint="--at"
        ) from None
    try:
        # Arguments are checked before Kafka is contacted.
        build_label(transaction_id, verdict, analyst, labelled_at=labelled_at, note=note)
    except ValidationError as exc:
        hint = {"analyst_id": "--analyst", "note": "--note"}.get(exc.field or "", "TRANSACTION_ID")
        raise typer.BadParameter(str(exc), param_hint=hint) from None
    from rich.console import Console

    from stream.kafka_io import require_broker

    settings: Settings = ctx.obj
    require_broker(settings.kafka, timeout_s=min(timeout, 10.0))
    with Console(stderr=True).status(f"looking for the decision of {transaction_id} ..."):
        outcome = label_transaction(
            settings,
            transaction_id,
            verdict,
            analyst,
            note=note,
            now=labelled_at,
            timeout_s=timeout,
        )
    decision, where = outcome.decision, outcome.published
    typer.echo(
        f"labelled {transaction_id} {verdict} (decision {decision['decision']}, score "
        f"{'none' if decision['score'] is None else format(decision['score'], '.3f')}, model {decision['model']['name']} v{decision['model']['version']}); "
        f"published to {settings.topics.feedback}[{where.partition}] at offset {where.offset}"
    )


def analyst(
    ctx: typer.Context,
    review_delay: float = typer.Option(
        4 * 3600.0,
        min=0.0,
        help="Seconds from an alerted transaction's event time to its label (transactions' clock).",
    ),
    chargeback_delay: float = typer.Option(
        3 * 86400.0, min=0.0, help="Seconds from an approved fraud's event time to its chargeback."
    ),
    error_rate: float = typer.Option(
        0.02, min=0.0, max=1.0, help="Share of labels that are wrong."
    ),
    daily_capacity: int = typer.Option(
        500, min=0, help="Labels per day; alerts beyond it are dropped (0 = unlimited)."
    ),
    day_seconds: float = typer.Option(
        86400.0, min=0.001, help="Length of a day for the capacity (compress time for demos)."
    ),
    truth_wait: float = typer.Option(
        3600.0, min=0.001, help="Seconds an alert waits for its ground truth before it is skipped."
    ),
    analysts: str = typer.Option(
        "analyst-01,analyst-02,analyst-03", help="Comma-separated analyst ids."
    ),
    seed: int = typer.Option(1, help="Seed of the error and analyst draws."),
    duration: float = typer.Option(
        None, min=0.001, help="Seconds to run (default: until interrupted)."
    ),
    from_beginning: bool = typer.Option(
        False, help="Read the input topics from their start instead of from now."
    ),
) -> None:
    """Play the fraud analysts: label alerts from the simulator's ground truth, send chargebacks.

    Consumes alerts, decisions and transactions.truth; publishes to feedback. Approved frauds
    come back as chargebacks (source chargeback) so recall can be measured from feedback alone.
    """
    import signal
    import threading

    from rich.console import Console
    from rich.table import Table

    from fraud.errors import ConfigError
    from simulator.analyst import AnalystConfig, run_analyst

    ids = tuple(name.strip() for name in analysts.split(",") if name.strip())
    try:
        config = AnalystConfig(
            review_delay_s=review_delay,
            error_rate=error_rate,
            daily_capacity=daily_capacity or None,
            chargeback_delay_s=chargeback_delay,
            day_s=day_seconds,
            truth_wait_s=truth_wait,
            analysts=ids,
            seed=seed,
        )
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    _check_analyst_ids(ids)
    from stream.kafka_io import require_broker

    settings: Settings = ctx.obj
    require_broker(settings.kafka)
    stop = threading.Event()
    # Ctrl-C and SIGTERM both end the run cleanly: due labels flushed, then the summary.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    summary = run_analyst(
        settings, config, duration_s=duration, from_beginning=from_beginning, stop=stop
    )
    table = Table(title=f"analyst desk -> {settings.topics.feedback}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for name, value in summary.as_dict().items():
        table.add_row(name.replace("_", " "), f"{value:,}")
    Console(width=100).print(table)
    if summary.delivery_errors:
        raise typer.Exit(code=1)


def _check_analyst_ids(ids: tuple[str, ...]) -> None:
    from fraud.errors import ValidationError
    from stream.feedback import check_analyst_id

    for analyst_id in ids:
        try:
            check_analyst_id(analyst_id)
        except ValidationError as exc:
            raise typer.BadParameter(str(exc), param_hint="--analysts") from None


def register(app: typer.Typer) -> None:
    """Add `label` and `analyst` to the top-level app."""
    app.command()(label)
    app.command()(analyst)
