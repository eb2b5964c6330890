"""`fraud`: the project's one command-line entry point.

Each group of commands is a module of this package (`fraud.cli.train`, `fraud.cli.worker`, ...)
with a `register(app)`; the options they share are declared once in `fraud.cli.options`. Heavy
imports happen inside the commands so that `fraud --help` stays instant.
"""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import typer

# Typer vendors Click (typer._click) and raises its exceptions; these two are not re-exported.
# tests/unit/fraud/test_cli_errors.py fails if that changes.
from typer._click.exceptions import NoArgsIsHelpError, UsageError

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


def _register_commands() -> None:
    """Every group of commands adds its own to the one app."""
    from fraud.cli import (
        bench,
        console,
        demo,
        feedback,
        ops,
        retrain,
        services,
        signing,
        simulate,
        train,
        worker,
    )

    groups = (
        services,
        simulate,
        train,
        signing,
        retrain,
        worker,
        feedback,
        console,
        ops,
        demo,
        bench,
    )
    for group in groups:
        group.register(app)


def _fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    sys.exit(2)


def run(args: list[str] | None = None) -> None:
    """Console-script entry point. One error path for every command: a bad option, a missing
    file, an unknown version or an unreachable service is one line on stderr naming the problem
    and what to do, and exit code 2 (commands check their input before writing anything)."""
    _register_commands()
    try:
        code = app(args=args, prog_name="fraud", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(0)
    except UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "fraud"
        _fail(f"{exc.format_message()} (see `{command} --help`)")
    except FraudScorerError as exc:
        _fail(str(exc))
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
