"""Stream subcommands for the `fraud` CLI."""

from __future__ import annotations

from pathlib import Path

import typer

from fraud.cli.options import existing_file
from fraud.secrets import mask_url
from fraud.settings import Settings


def worker(
    ctx: typer.Context,
    web_port: int = typer.Option(
        None, help="HTTP port for /health, /metrics, /predict (default 6066)."
    ),
    batch_size: int = typer.Option(None, help="Events per micro-batch (default 500)."),
    log_level: str = typer.Option("INFO", help="Log level of the JSON logs."),
) -> None:
    """Run the scoring worker: transactions -> decisions + alerts, feedback -> terminal risk.

    Start several to share the partitions of `transactions` (one consumer group). Needs a
    champion in the registry (`make train`).
    """
    from faust.worker import Worker as FaustWorker
    from threadpoolctl import threadpool_limits

    from stream.worker import build_worker, create_app, freeze_heap, logging_config

    # One native thread per worker: batches are small, and OpenMP's thread team (sklearn's
    # predict) costs more in hand-offs than it saves; on a busy host it made a 30-row predict
    # take 0.2-0.9 s instead of 20 ms. Scale out with more workers (partitions) instead.
    threadpool_limits(1)
    settings: Settings = ctx.obj
    updates = {
        k: v for k, v in {"web_port": web_port, "batch_size": batch_size}.items() if v is not None
    }
    settings = settings.model_copy(update=updates)
    from stream.kafka_io import require_broker

    require_broker(settings.kafka)
    scorer = build_worker(settings)
    model = scorer.models.load()  # refuses to start without a champion (ModelNotFoundError)
    typer.echo(f"scoring with {model.name} version {model.version} (@{model.alias})", err=True)
    (settings.state_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = create_app(scorer)
    freeze_heap()  # start-up's objects: never walked by the garbage collector again
    FaustWorker(
        app, loglevel=log_level, logging_config=logging_config(log_level)
    ).execute_from_commandline()


def warm_store(
    ctx: typer.Context,
    data: Path = typer.Option(
        None, help="History file (default: data/history/transactions.parquet)."
    ),
    days: float = typer.Option(
        30.0, min=0.01, help="Days of history to load, counted back from its last transaction."
    ),
) -> None:
    """Load the online feature store (Redis) with the last days of history, so that live cards
    carry their past (as in training) instead of all looking new. Run it before the first
    worker; running it again changes nothing."""
    from rich.progress import Progress

    from stream.features import warm_store as run
    from training.data import read_history

    settings: Settings = ctx.obj
    path = data or settings.data_dir / "history" / "transactions.parquet"
    existing_file(path, "--data", "history file (`make simulate` writes the default one)")
    with Progress(transient=True) as progress:
        task = progress.add_task("warming the feature store", total=None)
        report = run(
            settings,
            read_history(path),
            days,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    typer.echo(
        f"feature store {mask_url(settings.redis_url)} prefix {settings.redis_prefix!r}: "
        f"{report.transactions:,} transactions from {report.since} to {report.until}, "
        f"{report.labels:,} fraud labels, in {report.seconds:.1f} s"
    )


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.command("warm-store")(warm_store)
