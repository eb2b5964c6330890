"""`fraud`: the project's one command-line entry point.

Each subcommand lives with the package it belongs to and is registered here. Heavy
imports happen inside the commands so that `fraud --help` stays instant.
"""

from __future__ import annotations

import logging
import sys

import typer

from fraud.errors import FraudScorerError
from fraud.settings import Settings

app = typer.Typer(
    help="Real-time card-fraud scoring with ML governance.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Settings come from FRAUD_* variables plus KAFKA_BOOTSTRAP_SERVERS, REDIS_URL, MLFLOW_TRACKING_URI."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = Settings()


@app.command()
def topics(
    ctx: typer.Context,
    partitions: int = typer.Option(
        None, help="Partitions per topic (default: FRAUD_TOPIC_PARTITIONS or 4)."
    ),
    quiet: bool = typer.Option(False, help="Print only what was created."),
) -> None:
    """Create the project's Kafka topics that do not exist yet (broker auto-create is off)."""
    from stream.kafka_io import ensure_topics

    settings: Settings = ctx.obj
    names = settings.topics.all()
    created = ensure_topics(
        settings.kafka_bootstrap_servers, names, partitions or settings.topic_partitions
    )
    for name in created:
        typer.echo(f"created topic {name}")
    if not quiet:
        typer.echo(f"{len(names)} topics present on {settings.kafka_bootstrap_servers}")


@app.command("mlflow-check")
def mlflow_check(ctx: typer.Context) -> None:
    """Open (and on first use create) the MLflow tracking store and print its URI."""
    from training.registry import open_store

    settings: Settings = ctx.obj
    open_store(settings)
    typer.echo(settings.tracking_uri)


def _register_commands() -> None:
    """Subcommands owned by the other packages."""
    from simulator import cli as simulator_cli
    from stream import bench_cli, demo, feedback_cli, ops_cli
    from stream import cli as stream_cli
    from training import cli as training_cli
    from training import retrain_cli

    simulator_cli.register(app)
    stream_cli.register(app)
    ops_cli.register(app)
    feedback_cli.register(app)
    training_cli.register(app)
    retrain_cli.register(app)
    demo.register(app)
    bench_cli.register(app)


def run() -> None:
    """Console-script entry point: project errors become a message and exit code 2."""
    _register_commands()
    try:
        app()
    except FraudScorerError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    run()
