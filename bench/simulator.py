"""Benchmark of history generation: `python -m bench.simulator [--customers N --days D]`.

Writes a history (about 1 million rows by default) into a temporary folder and prints the
rows per second and the process's peak resident memory. Not a test: figures depend on the
machine.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from simulator.history import write_history


def peak_rss_mib() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=46)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="keep the files here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="simulator-bench-") as scratch:
        out = args.out or Path(scratch)
        rss_before = peak_rss_mib()
        began = time.perf_counter()
        manifest = write_history(out, args.customers, args.days, args.seed)
        seconds = time.perf_counter() - began
        sizes = {p.name: p.stat().st_size / 2**20 for p in sorted(out.iterdir())}
    rows = manifest["rows"]["transactions"]
    print(f"customers {args.customers:,}, days {args.days}: {rows:,} rows in {seconds:.1f} s")
    print(f"rows/s: {rows / seconds:,.0f}")
    print(f"peak RSS: {peak_rss_mib():,.0f} MiB (after imports: {rss_before:,.0f} MiB)")
    print(f"fraud rate: {manifest['fraud_rate']:.3%}")
    print("files: " + ", ".join(f"{name} {mib:,.1f} MiB" for name, mib in sizes.items()))


if __name__ == "__main__":
    main()
