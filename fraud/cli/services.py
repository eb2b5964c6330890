"""Service commands: `fraud topics` (create the Kafka topics), `fraud kafka-users` and `fraud acls`
(users and each role's topics on a secured broker) and `fraud mlflow-check`."""

from __future__ import annotations

import typer

from fraud.secrets import mask_url
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
    require_broker(settings.kafka)
    names = settings.topics.all()
    created = ensure_topics(settings.kafka, names, partitions or settings.topic_partitions)
    for name in created:
        typer.echo(f"created topic {name}")
    if not quiet:
        typer.echo(f"{len(names)} topics present on {settings.kafka.describe()}")


def acls(
    ctx: typer.Context,
    show: bool = typer.Option(False, "--print", help="Print the grants without applying them."),
) -> None:
    """Grant each role its topics on a secured broker (Kafka ACLs); needs the admin user.

    Roles: scorer, producer, simulator, analyst, trainer, monitor (SECURITY.md says what each
    may read and write), on the topic and group names of the settings.
    """
    from stream.kafka_acl import apply_grants, role_grants
    from stream.kafka_io import require_broker

    settings: Settings = ctx.obj
    grants = role_grants(settings)
    if show:
        for grant in grants:
            typer.echo(grant.describe())
        return
    require_broker(settings.kafka)
    count = apply_grants(settings.kafka, grants)
    typer.echo(f"{count} ACLs in place on {settings.kafka.describe()}")


def kafka_users(
    ctx: typer.Context,
    users: list[str] = typer.Argument(
        ..., help="User names (one per role: scorer, producer, ...)."
    ),
) -> None:
    """Create Kafka SCRAM users or change their passwords; needs the admin user.

    Each password is read from KAFKA_USER_PASSWORD_<USER>, never from the command line.
    """
    import os

    from fraud.errors import ConfigError
    from stream.kafka_acl import set_scram_users
    from stream.kafka_io import require_broker

    settings: Settings = ctx.obj
    passwords = {}
    for user in users:
        variable = f"KAFKA_USER_PASSWORD_{user.upper()}"
        if not os.environ.get(variable):
            raise ConfigError(f"{variable} is not set: put the new password of {user} there")
        passwords[user] = os.environ[variable]
    require_broker(settings.kafka)
    set_scram_users(settings.kafka, passwords)
    typer.echo(f"SCRAM-SHA-512 users set on {settings.kafka.describe()}: {', '.join(users)}")


def mlflow_check(ctx: typer.Context) -> None:
    """Open (and on first use create) the MLflow tracking store and print its URI."""
    from stream.scoring import open_store

    settings: Settings = ctx.obj
    open_store(settings)
    typer.echo(mask_url(settings.tracking_uri))


def register(app: typer.Typer) -> None:
    app.command()(topics)
    app.command()(acls)
    app.command("kafka-users")(kafka_users)
    app.command("mlflow-check")(mlflow_check)
