"""What the commands share: options declared once, parsers for their values, and the console
helpers (a spinner per step, a progress bar per simulated day).

A bad value ends the command with one line naming the option and what is expected
(`typer.BadParameter`, exit 2), before anything is read or written.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import typer

from fraud.errors import InputError

# -- options declared once -------------------------------------------------------------------

DATA = typer.Option(None, help="History file (default: data/history/transactions.parquet).")
CUSTOMERS_FILE = typer.Option(
    None,
    "--customers-file",
    help="Customers table for the fairness audit (default: beside the history).",
)
LABEL_DELAY_DAYS = typer.Option(
    None, min=0, help="Label delay in days (default: FRAUD_LABEL_DELAY_DAYS, 7)."
)
MAX_ALERT_RATE = typer.Option(0.02, min=0.0, max=1.0, help="Alert-rate cap.")
DECLINE_CONFIDENCE = typer.Option(
    0.95,
    "--decline-confidence",
    help="Confidence that the decline threshold meets the 95% precision target on validation "
    "(one-sided lower bound); 0 = the observed precision is enough.",
)
FAIRNESS_BAND = typer.Option(
    None, help="Fairness gate: allowed ratio band between groups, LOW,HIGH (default 0.8,1.25)."
)
FAIRNESS_MIN_EVENTS = typer.Option(
    None, min=1.0, help="Fairness gate: expected events a group needs to be judged (default 100)."
)
FOLDS = typer.Option(
    3,
    min=0,
    help="Rolling-origin folds that choose hyper-parameters and thresholds out of time before "
    "the model is refit on every labelled day; 0 = the holdout design (no refit).",
)
SEARCH_TRIALS = typer.Option(
    6,
    min=1,
    help="Hyper-parameter settings tried on the folds (the defaults, then random ones); 1 = "
    "the defaults only.",
)
GENUINE_SHARE = typer.Option(
    0.25,
    min=0.01,
    max=1.0,
    help="Share of the genuine transactions each fit learns from, weighted to stand for the "
    "rest (every fraud is kept); 1 = every row.",
)
JOBS = typer.Option(
    1,
    min=1,
    help="Fits of the search run side by side on this many threads (same results; 2 on an "
    "otherwise idle two-core machine).",
)
THREADS = typer.Option(
    1, min=1, help="Native threads for fitting and scoring (1 is fastest on a shared machine)."
)


# -- parsers ---------------------------------------------------------------------------------


def existing_file(path: Path, option: str, what: str = "file") -> Path:
    """`path` if it is a readable file; otherwise InputError naming the option and the path."""
    if not path.exists():
        raise InputError(f"{option} {path}: no such {what}; check the path")
    if not path.is_file():
        raise InputError(f"{option} {path} is not a file")
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise InputError(f"{option} {path} cannot be read: {exc.strerror}") from None
    return path


def decline_confidence(value: float) -> float | None:
    """--decline-confidence: 0 (observed precision is enough) or a level in [0.5, 1)."""
    if value == 0:
        return None
    if not 0.5 <= value < 1:
        raise typer.BadParameter(
            f"expected 0 or a confidence in [0.5, 1), got {value}",
            param_hint="--decline-confidence",
        )
    return value


def confidence_level(value: float, option: str) -> float:
    """A confidence option's value, refused (naming `option`) outside [0.5, 1)."""
    if not 0.5 <= value < 1:
        raise typer.BadParameter(
            f"expected a confidence in [0.5, 1), got {value}", param_hint=option
        )
    return value


def parse_band(text: str) -> tuple[float, float]:
    """--fairness-band '0.8,1.25' -> (0.8, 1.25), a band around parity (LOW <= 1 <= HIGH)."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        low = high = float("nan")
    if not 0 < low <= 1.0 <= high:
        raise typer.BadParameter(
            f"expected LOW,HIGH with 0 < LOW <= 1 <= HIGH, got {text!r}",
            param_hint="--fairness-band",
        )
    return low, high


_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_interval(text: str, option: str = "--every") -> timedelta:
    """'7d', '12h', '30m', '90s', '1w' -> timedelta; BadParameter otherwise."""
    match = _INTERVAL.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise typer.BadParameter(
            f"expected a positive number and a unit s/m/h/d/w (e.g. 7d), got {text!r}",
            param_hint=option,
        )
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def parse_model_params(items: list[str]) -> dict[str, Any]:
    """['max_iter=100', 'learning_rate=0.1'] -> {'max_iter': 100, 'learning_rate': 0.1}."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise typer.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--param")
        try:
            params[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[key.strip()] = raw
    return params


# -- console ---------------------------------------------------------------------------------


def stderr_console() -> Any:
    """Progress and tables go to stderr, so stdout stays for what a script would read."""
    from rich.console import Console

    return Console(stderr=True)


@contextmanager
def step(out: Any, label: str) -> Iterator[Callable[[], float]]:
    """A spinner while the step runs, then one line with its duration."""
    started = time.perf_counter()
    with out.status(f"[bold]{label}[/] ..."):
        yield lambda: time.perf_counter() - started
    out.print(f"[green]done[/] {label} ({time.perf_counter() - started:.1f}s)")


@contextmanager
def day_progress(out: Any, description: str, days: int) -> Iterator[Callable[[int, int], None]]:
    """A progress bar over simulated days; yields the simulator's `on_day(day, rows)` callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=days)
        yield lambda day, _rows: progress.update(task, completed=day + 1)
