"""Console tables of a benchmark results document (the same dict that is written as JSON)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _latency_cells(latency: Mapping[str, Any] | None) -> list[str]:
    if not latency:
        return ["-"] * 4
    return [_num(latency[k], 1) for k in ("p50", "p95", "p99", "max")]


def _met(flag: bool | None) -> str:
    return "-" if flag is None else ("[green]met[/green]" if flag else "[red]missed[/red]")


def _batch_and_alerts(result: Mapping[str, Any]) -> str:
    tiers = result.get("decision_shares") or {}
    flagged = tiers.get("review", 0.0) + tiers.get("decline", 0.0)
    return f"batches of {_num(result.get('mean_batch_size'), 0)}, {flagged:.1%} review/decline"


def _reading(value: float | None) -> str:
    if not value:
        return ""
    return (
        f"worker {value:,.3g} times as fast"
        if value >= 1
        else f"baseline {1 / value:,.3g} times as fast"
    )


def header(document: Mapping[str, Any]) -> str:
    machine, versions, settings = document["machine"], document["versions"], document["settings"]
    load = "/".join(f"{v:.1f}" for v in machine.get("load_average_at_start", []))
    end_load = "/".join(f"{v:.1f}" for v in machine.get("load_average_at_end", []))
    champion = settings.get("champion", {})
    lines = [
        f"[bold]fraud bench[/bold] run {document['run_id']} ({document['started_at']})",
        f"machine: {machine['cores']} cores, {machine['cpu']}; load average (1/5/15 min) "
        f"{load} at start, {end_load or '-'} at end",
        "versions: "
        + ", ".join(
            f"{k} {v}"
            for k, v in versions.items()
            if v is not None and k != "python" and not k.startswith("git_")
        )
        + f", python {versions['python']}",
        f"source: commit {versions.get('git_commit') or '?'}"
        + (
            f" with uncommitted changes to {', '.join(versions['git_modified_files'])}"
            if versions.get("git_modified_files")
            else ""
        ),
        f"settings: {settings['events']:,} pre-loaded events, rates "
        + ", ".join(f"{r:,.0f}" for r in settings["rates"])
        + f" tx/s x {settings['duration_s']:g} s (warm-up {settings['warmup_s']:g} s), "
        f"{settings['partitions']} partitions, {settings['customers']:,} customers, worker batch "
        f"{settings['worker_batch_size']} / {settings['worker_batch_within_s'] * 1000:g} ms, "
        f"model version {champion.get('version', '-')}"
        + (" (trained for this run)" if champion.get("trained_now") else " (reused)"),
    ]
    return "\n".join(lines)


def results_table(document: Mapping[str, Any]) -> Table:
    table = Table(title="One worker, end to end (real Kafka + Redis on this machine)")
    columns = ("run", "offered tx/s", "events", "decisions/s", "p50 ms", "p95 ms", "p99 ms")
    for name in (*columns, "max ms", "worker CPU", "others CPU", "note"):
        table.add_column(name, justify="left" if name in ("run", "note") else "right")
    saturation = document["worker"]["saturation"]
    if saturation:
        note = (
            f"{_num(saturation['decided'])} decided in {saturation['span_s']:.1f} s; "
            f"{_num(saturation['decisions_per_worker_cpu_s'])} per worker CPU-second; "
            f"{_batch_and_alerts(saturation)}"
        )
        if saturation["dead_lettered"]:
            note += f"; {saturation['dead_lettered']:,} dead letters {saturation['dead_letter_reasons']}"
        if not saturation["complete"]:
            note += "; stopped at the time limit"
        table.add_row(
            "worker, saturation",
            "pre-loaded",
            _num(saturation["events"]),
            f"[bold]{_num(saturation['decisions_per_s'])}[/bold]",
            *["-"] * 4,
            _num(saturation["worker_cpu_share"], 2),
            _num(saturation["others_cpu_share"], 2),
            note,
        )
    for fixed in document["worker"]["fixed_rates"]:
        note = (
            f"last decision {_num(fixed['drain_s'], 2)} s after the last send; "
            f"{_batch_and_alerts(fixed)}"
        )
        if not fixed["kept_up"]:
            note = (
                f"NOT KEPT UP: {fixed['decided_in_window']:,} of {fixed['sent']:,} decided in "
                f"the window, {fixed['decided']:,} by the drain limit; {_batch_and_alerts(fixed)}"
            )
        table.add_row(
            f"worker, {fixed['offered_rate']:,.0f} tx/s",
            _num(fixed["achieved_offered_rate"]),
            _num(fixed["sent"]),
            _num(fixed["decisions_per_s"]),
            *_latency_cells(fixed["latency_ms"]),
            _num(fixed["worker_cpu_share"], 2),
            _num(fixed["others_cpu_share"], 2),
            note,
        )
    for skipped in document["worker"].get("skipped_rates", []):
        table.add_row(
            f"worker, {skipped:,.0f} tx/s",
            *["-"] * 9,
            "skipped: a lower rate was already not kept up",
        )
    for name, baseline in document["baselines"].items():
        table.add_row(
            f"baseline: {name}",
            "max",
            _num(baseline["count"]),
            _num(baseline["per_s"]),
            *_latency_cells(baseline["latency_ms"]),
            "-",
            "-",
            baseline["description"],
        )
    table.caption = (
        "latency = decided_at - Kafka record timestamp (set at send) for the worker; "
        "request round trip for HTTP. CPU = cores busy on average (CPU s per wall s): the "
        "worker's, and every other process's on this machine (the benchmark's producer included)"
    )
    return table


def verdict_table(document: Mapping[str, Any]) -> Table:
    table = Table(title="Ratios and targets")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_column("", justify="left")
    for name, value in document["ratios"].items():
        label = name.replace("worker_vs_", "worker saturation / ")
        table.add_row(label, "-" if value is None else f"{value:,.3g}x", _reading(value))
    targets = document["targets"]
    throughput = targets["decisions_per_s"]
    table.add_row(
        f"decisions/s, one worker (target >= {throughput['target']:,.0f})",
        _num(throughput["measured"]),
        _met(throughput["met"]),
    )
    p99 = targets["p99_ms"]
    table.add_row(
        f"p99 ms at {p99['at_offered_rate']:,.0f} tx/s (target < {p99['target']:g})",
        _num(p99["measured"], 1),
        _met(p99["met"]),
    )
    return table


def profile_tables(profile: Mapping[str, Any], top: int = 15) -> list[Table]:
    span = profile.get("saturation_span_s")
    hot = Table(
        title="Worker profile: hot path (cumulative s, every thread"
        + (f"; saturation span {span:.1f} s under the profiler)" if span else ")")
    )
    for name in ("step", "calls", "seconds"):
        hot.add_column(name, justify="left" if name == "step" else "right")
    for row in profile["hot_path"]:
        hot.add_row(row["step"], _num(row["calls"]), _num(row["cumulative_s"], 2))
    areas = Table(title="Worker profile: self time by owner")
    for name in ("owner", "self s", "share"):
        areas.add_column(name, justify="left" if name == "owner" else "right")
    for row in profile["self_time_by_area"][:top]:
        areas.add_row(row["area"], _num(row["self_s"], 2), f"{row['share']:.1%}")
    functions = Table(title="Worker profile: top functions by self time")
    for name in ("function", "self s", "cum s", "calls"):
        functions.add_column(name, justify="left" if name == "function" else "right")
    for row in profile["top_functions"][:top]:
        functions.add_row(
            row["function"][-90:],
            _num(row["self_s"], 2),
            _num(row["cumulative_s"], 2),
            _num(row["calls"]),
        )
    threads = Table(title="Worker profile: profiled seconds per thread")
    threads.add_column("thread")
    threads.add_column("seconds", justify="right")
    for row in profile.get("threads", []):
        threads.add_row(row["thread"], _num(row["seconds"], 2))
    return [threads, hot, areas, functions]


def render(document: Mapping[str, Any], console: Console) -> None:
    console.print(header(document))
    console.print(results_table(document))
    console.print(verdict_table(document))
    if document.get("profile"):
        for table in profile_tables(document["profile"]):
            console.print(table)
