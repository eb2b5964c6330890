"""Reason-code speed on the registered model: `python -m training.bench_explain`.

Times `ReasonCoder.reason_codes` (what the scorer calls on a batch's review/decline rows) for
batches of alerted transactions from the model's own test window, and shap's TreeExplainer on
the same rows for scale (shap's numbers are not usable reason codes for this model, see
training/treeshap.py, but it is the reference implementation of the algorithm).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any


def _median_ms(function: Any, repeats: int, clock: Any = time.perf_counter) -> float:
    """Median milliseconds; `time.process_time` gives CPU time, which other processes on a
    shared machine do not inflate."""
    timings = []
    for _ in range(repeats):
        started = clock()
        function()
        timings.append(clock() - started)
    return 1000 * statistics.median(timings)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--sizes", default="1,10,30,100")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--with-shap", action="store_true", help="Also time shap's TreeExplainer.")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from fraud.settings import Settings
    from training.registry import load_model_version, open_store
    from training.tracking import read_test_window

    settings = Settings()
    loaded = load_model_version(settings, alias=args.alias)
    window = read_test_window(open_store(settings), loaded.run_id)
    features = window[list(loaded.feature_names)]
    scores = loaded.predict_scores(window)
    alerted = features[scores >= loaded.thresholds.review]
    started = time.perf_counter()
    coder = loaded.reason_coder()
    build_ms = 1000 * (time.perf_counter() - started)
    coder.reason_codes(alerted.head(2))  # compiled code is loaded from cache on first use

    explainer = None
    if args.with_shap:
        import shap

        explainer = shap.TreeExplainer(loaded.model)
    results: dict[str, Any] = {
        "model": f"{loaded.name} v{loaded.version}",
        "trees": len(coder._forest.roots) if coder._forest is not None else None,
        "build_ms": round(build_ms, 1),
        "batches": [],
    }
    table = Table(title=f"reason codes, {results['model']} ({results['trees']} trees)")
    for column in ("rows", "ms per batch", "CPU ms per batch", "CPU ms per row", "shap ms"):
        table.add_column(column, justify="right")
    for size in (int(s) for s in args.sizes.split(",")):
        rows = alerted.head(size)
        ours = _median_ms(lambda rows=rows: coder.reason_codes(rows), args.repeats)
        cpu = _median_ms(
            lambda rows=rows: coder.reason_codes(rows), args.repeats, time.process_time
        )
        theirs = None
        if explainer is not None:
            theirs = _median_ms(
                lambda rows=rows: explainer.shap_values(rows, check_additivity=False),
                args.repeats,
            )
        results["batches"].append(
            {
                "rows": len(rows),
                "ms": round(ours, 2),
                "cpu_ms": round(cpu, 2),
                "shap_ms": theirs and round(theirs, 2),
            }
        )
        table.add_row(
            str(len(rows)),
            f"{ours:.1f}",
            f"{cpu:.1f}",
            f"{cpu / max(1, len(rows)):.2f}",
            "-" if theirs is None else f"{theirs:.1f}",
        )
    Console().print(table)
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
