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


def _saturation_note(result: Mapping[str, Any]) -> str:
    note = (
        f"{_num(result['decided'])} decided in {result['span_s']:.1f} s; "
        f"{_num(result['decisions_per_worker_cpu_s'])} per worker CPU-second; "
        f"{_batch_and_alerts(result)}"
    )
    if result["dead_lettered"]:
        note += f"; {result['dead_lettered']:,} dead letters {result['dead_letter_reasons']}"
    if not result["complete"]:
        note += "; stopped at the time limit"
    if result.get("note"):
        note += f"; {result['note']}"
    return note


def _saturation_row(table: Table, label: str, result: Mapping[str, Any]) -> None:
    table.add_row(
        label,
        "pre-loaded",
        _num(result["events"]),
        f"[bold]{_num(result['decisions_per_s'])}[/bold]",
        *["-"] * 4,
        _num(result["worker_cpu_share"], 2),
        _num(result["others_cpu_share"], 2),
        _num(result.get("worker_cpu_s_per_1000"), 3),
        _num(result.get("others_cpu_s_per_1000"), 3),
        _saturation_note(result),
    )


def results_table(document: Mapping[str, Any]) -> Table:
    table = Table(title="The worker end to end, and its ceilings (real Kafka + Redis, same run)")
    columns = ("run", "offered tx/s", "events", "decisions/s", "p50 ms", "p95 ms", "p99 ms")
    cpu = ("max ms", "worker CPU", "others CPU", "worker CPU-s /1k", "others CPU-s /1k")
    for name in (*columns, *cpu, "note"):
        table.add_column(name, justify="left" if name in ("run", "note") else "right")
    worker = document["worker"]
    if worker["saturation"]:
        _saturation_row(table, "worker, saturation", worker["saturation"])
    if worker.get("two_workers"):
        _saturation_row(table, "2 workers, saturation", worker["two_workers"])
    for fixed in worker["fixed_rates"]:
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
            _num(fixed.get("worker_cpu_s_per_1000"), 3),
            _num(fixed.get("others_cpu_s_per_1000"), 3),
            note,
        )
    for skipped in worker.get("skipped_rates", []):
        table.add_row(
            f"worker, {skipped:,.0f} tx/s",
            *["-"] * 11,
            "skipped: a lower rate was already not kept up",
        )
    for name, baseline in document["baselines"].items():
        table.add_row(
            f"ceiling: {name}",
            "max",
            _num(baseline["count"]),
            _num(baseline["per_s"]),
            *_latency_cells(baseline["latency_ms"]),
            "-",
            "-",
            _num(baseline.get("cpu_s_per_1000"), 3),
            "-",
            baseline["description"],
        )
    table.caption = (
        "latency = decided_at - Kafka record timestamp (set at send) for the worker; "
        "request round trip for HTTP. CPU = cores busy on average (CPU s per wall s): the "
        "worker's, and every other process's on this machine (the benchmark's producer "
        "included); CPU-s /1k = CPU seconds per 1,000 decisions (ceilings: their own process "
        "per 1,000 events)"
    )
    return table


def verdict_table(document: Mapping[str, Any]) -> Table:
    table = Table(title="Ratios (same run) and targets")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_column("", justify="left")
    for name, value in document["ratios"].items():
        label = name.replace("worker_vs_", "worker saturation / ").replace("_per_cpu_s", "")
        label = label.replace("_", " ") + (
            ", per CPU-second" if name.endswith("_per_cpu_s") else ""
        )
        table.add_row(label, "-" if value is None else f"{value:,.3g}x", _reading(value))
    for check in document["targets"]:
        ratio = check["name"].startswith("vs_")
        measured = check["measured"]
        value = (
            "-"
            if measured is None
            else (
                f"{measured:,.3g}x" if ratio else _num(measured, 1 if "p99" in check["name"] else 0)
            )
        )
        verdict = _met(check["met"])
        if check.get("note"):
            verdict += f" ({check['note']})"
        table.add_row(check["label"], value, verdict)
    return table


def stages_table(document: Mapping[str, Any]) -> Table | None:
    """Per fixed rate, where a batch's time went (the worker's fraud_batch_stage_seconds)."""
    rates = [r for r in document["worker"].get("fixed_rates", []) if r.get("batch_stages")]
    if not rates:
        return None
    stages = list(rates[0]["batch_stages"])  # as the worker exports them
    table = Table(title="Where a batch's time goes at each rate (the worker's own histogram)")
    table.add_column("offered tx/s", justify="right")
    table.add_column("batches", justify="right")
    for stage in stages:
        table.add_column(f"{stage} p50 / p99 ms", justify="right")
    for result in rates:
        by_stage = result["batch_stages"]
        cells = []
        for stage in stages:
            row = by_stage.get(stage) or {}
            cells.append(f"{_num(row.get('p50_ms'), 1)} / {_num(row.get('p99_ms'), 1)}")
        batches = (by_stage.get("deciding") or {}).get("batches")
        table.add_row(_num(result["offered_rate"]), _num(batches), *cells)
    table.caption = (
        "per batch: fetch_wait = its oldest transaction's time on the broker before the batch "
        "was fetched, deciding = admission, store lane (queue + Redis) and scoring, delivery = "
        "outputs to the broker; interpolated inside the histogram's buckets (..., 5, 7.5, 10, "
        "15, 20, 30, 50, 75, 100, 150, 250 ms, ...), as Prometheus's histogram_quantile"
    )
    return table


def sampling_tables(profile: Mapping[str, Any], top: int = 15) -> list[Table]:
    """The py-spy profile: CPU by area beside the wall time of the event loop, the store lane
    and (FRAUD_STORE_PROCESS=1) the store process; top functions, threads."""
    cpu = profile["cpu"]
    walls = {
        column: {row["area"]: row for row in (profile.get(key) or {}).get("by_area", [])}
        for column, key in (
            ("loop wall", "event_loop_wall"),
            ("lane wall", "store_lane_wall"),
            ("store process wall", "store_process_wall"),
        )
    }
    if not walls["store process wall"]:
        del walls["store process wall"]
    decisions = profile.get("decisions")
    areas = Table(
        title=f"Worker profile (py-spy, {profile['rate_hz']:g} Hz, {profile['window_s']:.1f} s, "
        f"{_num(decisions)} decisions): CPU by area, every thread and child process; wall time "
        "of the event loop, the store lane and the store process"
    )
    areas.caption = (
        "CPU share = share of the active samples (every thread); CPU s and µs/decision = that "
        f"share of the worker's {cpu['seconds_from']}; wall share = share of that thread's "
        "wall time (Redis wait: blocked reading a script's reply; store process wait: the lane "
        "waiting for the store process's answer)"
    )
    for name in ("area", "CPU s", "CPU share", "CPU µs/decision", *walls):
        areas.add_column(name, justify="left" if name == "area" else "right")

    def wall_shares(area: str) -> list[str]:
        return [
            "-" if area not in shares else f"{shares[area]['share']:.1%}"
            for shares in walls.values()
        ]

    seen = set()
    for row in cpu["by_area"]:
        seen.add(row["area"])
        areas.add_row(
            row["area"],
            _num(row["seconds"], 2),
            f"{row['share']:.1%}",
            _num(row["us_per_decision"], 1),
            *wall_shares(row["area"]),
        )
    for area in dict.fromkeys(area for shares in walls.values() for area in shares):
        if area not in seen:
            areas.add_row(area, "-", "-", "-", *wall_shares(area))
    areas.add_row(
        "[bold]total[/bold]",
        _num(cpu["seconds"], 2),
        "100%",
        _num(cpu.get("us_per_decision"), 1),
        *([""] * len(walls)),
    )
    functions = Table(title="Worker profile: top functions by CPU samples (innermost Python frame)")
    for name in ("function", "area", "samples", "share"):
        functions.add_column(name, justify="left" if name in ("function", "area") else "right")
    for row in cpu["top_functions"][:top]:
        functions.add_row(
            row["function"][-90:], row["area"], _num(row["samples"]), f"{row['share']:.1%}"
        )
    threads = Table(title="Worker profile: active samples per thread")
    threads.add_column("thread")
    threads.add_column("share", justify="right")
    for row in cpu["by_thread"]:
        threads.add_row(row["thread"], f"{row['share']:.1%}")
    return [areas, functions, threads]


def cprofile_tables(profile: Mapping[str, Any], top: int = 15) -> list[Table]:
    span = profile.get("saturation_span_s")
    hot = Table(
        title="Worker under cProfile: hot path (cumulative s, every thread"
        + (f"; saturation span {span:.1f} s under the profiler)" if span else ")")
    )
    for name in ("step", "calls", "seconds"):
        hot.add_column(name, justify="left" if name == "step" else "right")
    for row in profile["hot_path"]:
        hot.add_row(row["step"], _num(row["calls"]), _num(row["cumulative_s"], 2))
    areas = Table(title="Worker under cProfile: self time by owner")
    for name in ("owner", "self s", "share"):
        areas.add_column(name, justify="left" if name == "owner" else "right")
    for row in profile["self_time_by_area"][:top]:
        areas.add_row(row["area"], _num(row["self_s"], 2), f"{row['share']:.1%}")
    functions = Table(title="Worker under cProfile: top functions by self time")
    for name in ("function", "self s", "cum s", "calls"):
        functions.add_column(name, justify="left" if name == "function" else "right")
    for row in profile["top_functions"][:top]:
        functions.add_row(
            row["function"][-90:],
            _num(row["self_s"], 2),
            _num(row["cumulative_s"], 2),
            _num(row["calls"]),
        )
    threads = Table(title="Worker under cProfile: profiled seconds per thread")
    threads.add_column("thread")
    threads.add_column("seconds", justify="right")
    for row in profile.get("threads", []):
        threads.add_row(row["thread"], _num(row["seconds"], 2))
    return [threads, hot, areas, functions]


def render(document: Mapping[str, Any], console: Console) -> None:
    console.print(header(document))
    console.print(results_table(document))
    console.print(verdict_table(document))
    stages = stages_table(document)
    if stages is not None:
        console.print(stages)
    if document.get("profile"):
        for table in sampling_tables(document["profile"]):
            console.print(table)
    if document.get("cprofile"):
        for table in cprofile_tables(document["cprofile"]):
            console.print(table)
    for error in document.get("errors", []):
        console.print(f"[red]error: {error}[/red]")
