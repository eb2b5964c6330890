"""The chaos run's report: one JSON document (run, totals, per-phase figures, failures) and the
table a person reads, per fault: traffic held, lost, duplicated, double-counted, missed, the
longest decision gap. Columns: dup = transactions decided again, dup other = of those, repeats
with other features; double / missed = first decisions whose card counts are above / below the
replay; dead = dead letters; gap = the longest stretch of a partition without a decision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table


def write_report(document: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"chaos-{document['run']['id']}.json"
    path.write_bytes(
        orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n"
    )
    return path


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def phase_table(document: dict[str, Any]) -> Table:
    run = document["run"]
    table = Table(
        title=f"Chaos run {run['id']}: {run['rate']:.0f} tx/s offered, "
        f"{run['partitions']} partitions, Kafka {run['kafka']}, Redis {run['redis']}"
    )
    for header in (
        "phase",
        "fault",
        "s",
        "back s",
        "offered/s",
        "acked/s",
        "decided/s",
        "lost",
        "dup",
        "dup other",
        "double",
        "missed",
        "degraded",
        "dead",
        "gap s (part.)",
        "max lat s",
    ):
        table.add_column(header, overflow="fold", max_width=44 if header == "fault" else 10)
    for row in document["phases"]:
        table.add_row(
            row["name"],
            row["detail"] + ("; " + "; ".join(row["notes"]) if row["notes"] else ""),
            _cell(row["seconds"]),
            _cell(row["recovered_after_s"]),
            _cell(row["offered_tx_s"]),
            _cell(row["acked_tx_s"]),
            _cell(row["decided_tx_s"]),
            _cell(row["lost"]),
            _cell(row["duplicated"]),
            _cell(row["duplicates_with_other_features"]),
            _cell(row["double_counted"]),
            _cell(row["missed"]),
            _cell(row["degraded"]),
            _cell(row["dead_letters"]),
            f"{_cell(row['longest_gap_s'])} ({_cell(row['longest_gap_partition'])})",
            _cell(row["max_latency_s"]),
        )
    return table


def render(document: dict[str, Any], console: Console) -> None:
    console.print(phase_table(document))
    t = document["totals"]
    aggregates = t["aggregates"]
    console.print(
        f"sent {t['sent']:,} (acknowledged {t['acknowledged']:,}, send errors {t['send_errors']}, "
        f"missing from the topic {t['missing_from_topic']}); decided {t['decided']:,} "
        f"with {t['decisions']:,} decisions; lost {t['lost']}; duplicated {t['duplicated']} "
        f"({t['duplicates_with_other_features']} with other features); degraded {t['degraded']}; "
        f"dead letters {t['dead_letters'] or 0}"
    )
    console.print(
        f"served features vs replay: {t['served']}; aggregates: "
        f"{aggregates.get('cards', 0):,} cards ({aggregates.get('cards_differing', 0)} differ), "
        f"{aggregates.get('terminals', 0):,} terminals ({aggregates.get('terminals_differing', 0)} "
        f"differ), double-counted {aggregates.get('double_counted', 0)}, missed "
        f"{aggregates.get('missed', 0)}; records unlike their decision "
        f"{aggregates.get('records_differing', 0)}"
    )
    failures = document["failures"]
    if failures:
        console.print(f"[red]NOT proven[/red]: {'; '.join(failures)}")
    else:
        console.print("[green]nothing lost, nothing counted twice, no dead letters[/green]")
