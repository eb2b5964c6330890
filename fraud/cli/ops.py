"""Operations subcommands: `fraud lag` (consumer lag) and `fraud monitor` (model monitoring).

Default ports, next to the worker's 6066: the lag exporter serves on 6067, the model monitor on
6068 (ops/prometheus/prometheus.yml scrapes all three).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from fraud.errors import ConfigError
from fraud.settings import Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from rich.table import Table

    from stream.monitoring import GroupLag, LagMetrics, LagMonitor, VersionHealth

STATUS_STYLES = {
    "OK": "green",
    "WARN": "yellow",
    "REWIND": "magenta",
    "STALL": "red",
    "STOP": "red",
}


def _clock(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


def lag_table(result: GroupLag) -> Table:
    """The readable view of one poll: one row per partition, the group's summary in the title."""
    from rich.table import Table

    status = result.status.name
    table = Table(
        title=(
            f"group {result.group} ({result.state}, {result.members} members) "
            f"[{STATUS_STYLES[status]}]{status}[/] - lag {result.total_lag:,} messages, "
            f"{result.max_lag_seconds:.1f} s at {_clock(result.evaluated_at)} UTC"
        ),
        title_justify="left",
    )
    table.add_column("topic", overflow="fold")
    for name in ("part", "committed", "log end", "lag", "lag s"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("commits", justify="right", no_wrap=True)
    table.add_column("last commit", justify="right", no_wrap=True)
    for p in result.partitions:
        table.add_row(
            p.topic,
            str(p.partition),
            "-" if p.committed_offset is None else f"{p.committed_offset:,}",
            f"{p.log_end_offset:,}",
            "-" if p.lag is None else f"{p.lag:,}",
            "-" if p.lag_seconds is None else f"{p.lag_seconds:.1f}",
            f"[{STATUS_STYLES[p.status.name]}]{p.status.name}[/]",
            str(p.commits_in_window),
            _clock(p.last_commit_at),
        )
    return table


def serve_registry(registry: CollectorRegistry, host: str, port: int) -> None:
    """Expose `registry` at http://host:port/metrics from a background thread."""
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {host}:{port}: {exc}; pick another --serve port"
        ) from exc
    typer.echo(f"serving metrics on http://{host}:{port}/metrics", err=True)


def lag(
    ctx: typer.Context,
    group: str = typer.Option(None, help="Consumer group (default: the scorer's, fraud-scorer)."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    watch: bool = typer.Option(False, "--watch", help="Refresh every --interval seconds."),
    serve: int = typer.Option(
        None,
        "--serve",
        metavar="PORT",
        help="Serve Prometheus metrics on PORT (6067 by default in ops/).",
    ),
    host: str = typer.Option("127.0.0.1", help="Address --serve binds (0.0.0.0 in a container)."),
    interval: float = typer.Option(5.0, min=0.1, help="Seconds between polls (--watch/--serve)."),
    window: int = typer.Option(10, min=2, help="Commits per partition the status is judged on."),
    min_stop: float = typer.Option(
        10.0, min=0, help="Never STOP sooner than this many seconds after the last commit."
    ),
    lookback: float = typer.Option(
        900.0, min=1, help="Seconds of commit history and log-end samples read on start."
    ),
) -> None:
    """Consumer lag per partition: offsets, lag in messages and seconds, and a status.

    The status is judged on the last --window commits of each partition.
    OK: nothing wrong.
    WARN: the lag grew across the window.
    REWIND: the committed offset went backwards.
    STALL: commits arrive but do not move while there is lag.
    STOP: no commit for longer than the window spans while there is lag.
    """
    import orjson
    from rich.console import Console
    from rich.live import Live

    from stream.kafka_io import require_broker
    from stream.monitoring import LagMetrics, LagMonitor, LagRules, check_group_exists

    settings: Settings = ctx.obj
    require_broker(settings.kafka)
    rules = LagRules(window=window, min_stop_s=min_stop)
    monitor = LagMonitor(
        settings.kafka,
        group or settings.consumer_group,
        rules=rules,
        lookback_s=lookback,
    )
    console = Console()
    try:
        if not watch and serve is None:
            result = monitor.poll()
            check_group_exists(result, settings.kafka)
            if json_output:
                typer.echo(orjson.dumps(result.as_dict(), option=orjson.OPT_INDENT_2).decode())
            else:
                console.print(lag_table(result))
            return
        metrics = LagMetrics()
        if serve is not None:
            serve_registry(metrics.registry, host, serve)
        stop = threading.Event()
        if watch and not json_output:
            with Live(console=console, auto_refresh=False) as live:

                def show(result: GroupLag) -> None:
                    live.update(lag_table(result), refresh=True)

                _run_until_interrupted(monitor, metrics, interval, stop, show)
        else:

            def emit(result: GroupLag) -> None:
                if json_output:
                    typer.echo(orjson.dumps(result.as_dict()).decode())

            _run_until_interrupted(monitor, metrics, interval, stop, emit)
    finally:
        monitor.close()


def _run_until_interrupted(
    monitor: LagMonitor,
    metrics: LagMetrics,
    interval: float,
    stop: threading.Event,
    on_result: Callable[[GroupLag], None],
) -> None:
    from stream.monitoring import run_exporter

    try:
        run_exporter(monitor, metrics, interval, stop, on_result)
    except KeyboardInterrupt:
        stop.set()


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def monitor_table(health: list[VersionHealth]) -> Table:
    from rich.table import Table

    table = Table(title="model versions in the window", title_justify="left")
    for name in ("version", "labels", "precision (decline)", "precision (flagged)", "recall"):
        table.add_column(name, justify="right")
    for name in ("score PSI", "worst feature PSI", "drift window"):
        table.add_column(name, justify="right")
    for h in health:
        features = {k: v for k, v in h.psi.items() if k != "score"}
        worst = max(features, key=features.__getitem__) if features else None
        table.add_row(
            h.version,
            f"{h.quality.labelled:,}",
            _share(h.quality.precision_decline),
            _share(h.quality.precision_flagged),
            _share(h.quality.recall),
            _share(h.psi.get("score")),
            "-" if worst is None else f"{worst} {features[worst]:.3f}",
            f"{h.drift_decisions:,}" if h.has_reference else "no reference",
        )
    return table


def _health_dict(h: VersionHealth) -> dict[str, Any]:
    return {
        "model_version": h.version,
        "labels": {f"{d}/{label}": n for (d, label), n in h.quality.counts.items()},
        "precision_decline": h.quality.precision_decline,
        "precision_flagged": h.quality.precision_flagged,
        "recall": h.quality.recall,
        "psi": h.psi,
        "drift_decisions": h.drift_decisions,
        "has_reference": h.has_reference,
    }


def monitor(
    ctx: typer.Context,
    serve: int = typer.Option(
        None,
        "--serve",
        metavar="PORT",
        help="Keep reading and serve Prometheus metrics on PORT (6068 in ops/).",
    ),
    host: str = typer.Option("127.0.0.1", help="Address --serve binds (0.0.0.0 in a container)."),
    json_output: bool = typer.Option(False, "--json", help="One-shot report as JSON."),
    interval: float = typer.Option(15.0, min=0.5, help="Seconds between gauge refreshes."),
    lookback_days: float = typer.Option(
        None,
        min=0.001,
        help="Days of decisions and feedback read on start (default: label delay + 1).",
    ),
    drift_window: int = typer.Option(
        5000, min=1, help="Latest decisions per version the PSI is over."
    ),
    min_drift: int = typer.Option(500, min=1, help="Decisions needed before a PSI is reported."),
    period: str = typer.Option(
        None, "--reference-period", help="Training period to compare with: validation or test."
    ),
) -> None:
    """Live precision and recall from analyst feedback joined to decisions, and drift (PSI).

    Without --serve: read both topics to their end, print one report per model version.
    """
    import orjson
    from rich.console import Console

    from stream.kafka_io import require_broker
    from stream.monitoring import (
        LabelJoin,
        ModelMonitor,
        MonitorMetrics,
        MonitorService,
        registry_references,
    )

    settings: Settings = ctx.obj
    require_broker(settings.kafka)
    days = lookback_days if lookback_days is not None else settings.label_delay_days + 1
    service = MonitorService(
        settings,
        ModelMonitor(LabelJoin(window_s=days * 86400), drift_window, min_drift),
        MonitorMetrics(),
        registry_references(settings, period),
        lookback_s=days * 86400,
    )
    try:
        if serve is None:
            service.read_until(service.end_offsets())
            health = service.refresh()
            if json_output:
                report = [_health_dict(h) for h in health]
                typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
            else:
                Console().print(monitor_table(health))
            return
        serve_registry(service.metrics.registry, host, serve)
        stop = threading.Event()
        try:
            service.run(stop, interval)
        except KeyboardInterrupt:
            stop.set()
    finally:
        service.close()


def register(app: typer.Typer) -> None:
    app.command()(lag)
    app.command()(monitor)
