"""`fraud`: every command of the project's one entry point, one module per group of commands."""

from fraud.cli.main import app, run

__all__ = ["app", "run"]
