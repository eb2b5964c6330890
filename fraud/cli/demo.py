"""`fraud demo`: the whole loop on one machine, in one command (see the `demo` package)."""

from __future__ import annotations

import logging

import typer

from fraud.settings import Settings


def demo_command(
    ctx: typer.Context,
    rate: float = typer.Option(500.0, min=1.0, help="Live transactions per second."),
    duration: float = typer.Option(60.0, min=1.0, help="Seconds of live traffic."),
    customers: int = typer.Option(5000, min=1, help="Customers of the simulated bank."),
    days: int = typer.Option(60, min=1, help="Days of history to simulate when it is missing."),
    seed: int = typer.Option(1, help="Seed of the bank (history and live traffic)."),
    scenario: str = typer.Option(
        None, help="Inject a fraud scenario unseen in history (atm_cashout)."
    ),
    scenario_at: float = typer.Option(
        None, min=0.0, help="Seconds into the traffic when it starts."
    ),
    web_port: int = typer.Option(6066, min=1, max=65535, help="The worker's HTTP port."),
    keep_services: bool = typer.Option(False, help="Leave services the demo started running."),
    warm_days: float = typer.Option(
        30.0, min=0.01, help="Days of history loaded into the demo's feature store."
    ),
    console_port: int = typer.Option(8080, min=1, max=65535, help="The analyst console's port."),
    keep_console: bool = typer.Option(
        False, help="After the summary, keep the console (and what it reads) up until Ctrl-C."
    ),
) -> None:
    """Start everything, stream live traffic with a live view, then stop and summarise."""
    from rich.console import Console

    from demo import DemoOptions, print_summary, run_demo

    settings: Settings = ctx.obj
    console = Console()
    # The live view polls /metrics every second; one log line per poll would bury it.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    options = DemoOptions(
        rate=rate,
        duration_s=duration,
        customers=customers,
        days=days,
        seed=seed,
        scenario=scenario,
        scenario_at=scenario_at,
        web_port=web_port,
        keep_services=keep_services,
        warm_days=warm_days,
        console_port=console_port,
        keep_console=keep_console,
    )
    summary = run_demo(settings, options, console)
    if not keep_console:  # with it, the summary came before the wait for Ctrl-C
        print_summary(console, summary, settings)


def register(app: typer.Typer) -> None:
    """Add `demo` to the top-level app."""
    app.command("demo")(demo_command)
