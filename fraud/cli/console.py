"""`fraud console`: serve the analyst console; `fraud console add-analyst`: let someone log in.

Heavy imports happen inside the commands so that `fraud --help` stays instant.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from fraud.settings import Settings

console_app = typer.Typer(
    help="The analyst console: a web page to work the alert queue.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@console_app.callback(invoke_without_command=True)
def console(
    ctx: typer.Context,
    host: str = typer.Option(None, help="Address to listen on (default 127.0.0.1)."),
    port: int = typer.Option(None, min=1, max=65535, help="Port (default 8080)."),
    store: Path = typer.Option(None, help="SQLite store (default .state/console/console.db)."),
    from_end: bool = typer.Option(
        False,
        "--from-end",
        help="Partitions this store has never read start at their end instead of their first "
        "record (a fresh console that should show only new alerts).",
    ),
) -> None:
    """Serve the analyst console (queue, alert pages, verdicts) on 127.0.0.1:8080.

    It reads alerts, decisions and feedback into its own store and resumes where it stopped;
    verdicts go to feedback the way `fraud label` sends them. Analysts log in with a password
    added by `fraud console add-analyst`.
    """
    if ctx.invoked_subcommand is not None:
        return
    from stream.kafka_io import require_broker

    settings: Settings = ctx.obj
    changes = {"host": host, "port": port, "store": store}
    console_settings = settings.console.model_copy(
        update={k: v for k, v in changes.items() if v is not None}
    )
    settings = settings.model_copy(update={"console": console_settings})
    require_broker(settings.kafka)
    from console import serve

    typer.echo(
        f"analyst console on http://{console_settings.host}:{console_settings.port} "
        f"(store {settings.console_store})",
        err=True,
    )
    serve(settings, from_end=from_end)


@console_app.command("add-analyst")
def add_analyst(
    ctx: typer.Context,
    analyst_id: str = typer.Argument(..., help="The id labels will carry (letters, digits, ._@-)."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input (one line)."
    ),
    print_only: bool = typer.Option(
        False,
        "--print",
        help="Print the entry instead of writing it (for FRAUD_CONSOLE_ANALYSTS).",
    ),
    file: Path = typer.Option(
        None,
        "--file",
        help="Analysts file (default FRAUD_CONSOLE_ANALYSTS_FILE or .state/console/analysts).",
    ),
) -> None:
    """Add an analyst, or set a new password for one: the file keeps only a hash (scrypt).
    A running console reads the file at every login, so no restart is needed."""
    from console import analyst_line, save_analyst
    from fraud.errors import ValidationError

    settings: Settings = ctx.obj
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        line = analyst_line(analyst_id, password)
    except ValidationError as exc:
        hint = "ANALYST_ID" if exc.field == "analyst_id" else "password"
        raise typer.BadParameter(str(exc), param_hint=hint) from None
    if print_only:
        typer.echo(line)
        return
    path = file or settings.console_analysts_file
    replaced = save_analyst(path, line)
    typer.echo(
        f"{'changed the password of' if replaced else 'added'} analyst {analyst_id} in {path}"
    )


def register(app: typer.Typer) -> None:
    """Add `console` (and `console add-analyst`) to the top-level app."""
    app.add_typer(console_app, name="console")
