"""Service commands: `fraud topics` (create the Kafka topics) and `fraud mlflow-check`."""

from __future__ import annotations

import typer

from fraud.settings import Settings


def topics(
    ctx: typer.Context,
    partitions: int = typer.Option(
        None, help="Partitions per topic (default: FRAUD_TOPIC_PARTITIONS or 4)."
    ),
    quiet: bool = typer.Option(False, help="Print only what was created."),
) -> None:
    """Create the project's Kafka topics that do not exist yet (broker auto-create is off)."""
    from stream.kafka_io import ensure_topics, require_broker

    settings: Settings = ctx.obj
    require_broker(settings.kafka_bootstrap_servers)
    names = settings.topics.all()
    created = ensure_topics(
        settings.kafka_bootstrap_servers, names, partitions or settings.topic_partitions
    )
    for name in created:
        typer.echo(f"created topic {name}")
    if not quiet:
        typer.echo(f"{len(names)} topics present on {settings.kafka_bootstrap_servers}")


def mlflow_check(ctx: typer.Context) -> None:
    """Open (and on first use create) the MLflow tracking store and print its URI."""
    from stream.scoring import open_store

    settings: Settings = ctx.obj
    open_store(settings)
    typer.echo(settings.tracking_uri)


def register(app: typer.Typer) -> None:
    app.command()(topics)
    app.command("mlflow-check")(mlflow_check)
