"""Simulator subcommands for the `fraud` CLI."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the simulator's commands to the top-level app."""
