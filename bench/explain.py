"""Reason-code speed on the registered model: `python -m bench.explain`.

Times `MatrixModel.reason_codes` (what the stream worker calls on a batch's review/decline
rows) for batches of alerted transactions from the model's own test window, each repeat on
different rows (the same rows again would find their TreeSHAP table entries in cache), and
the cost of preparing the model (flattening its trees and building the contribution tables,
paid on every load and hot reload). `--table-bytes 0` computes every path per row instead of
reading tables, for comparison. `--with-shap` also times shap's TreeExplainer on the same
rows for scale (shap's numbers are not usable reason codes for this model, see
stream/scoring/treeshap.py, but it is the reference implementation of the algorithm).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from collections.abc import Callable
from typing import Any


def _median_ms(
    function: Callable[[int], Any], repeats: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Median milliseconds of `function(repeat)`; `time.process_time` gives CPU time, which
    other processes on a shared machine do not inflate."""
    timings = []
    for repeat in range(repeats):
        started = clock()
        function(repeat)
        timings.append(clock() - started)
    return 1000 * statistics.median(timings)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--sizes", default="1,10,30,100")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--table-bytes",
        type=int,
        default=None,
        help="Memory for TreeSHAP tables (default: treeshap.TABLE_BYTES; 0: none).",
    )
    parser.add_argument("--with-shap", action="store_true", help="Also time shap's TreeExplainer.")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from fraud.settings import Settings
    from stream.scoring import load_model_version, open_store, treeshap
    from training.governance import read_test_window

    settings = Settings()
    loaded = load_model_version(settings, alias=args.alias)
    window = read_test_window(open_store(settings), loaded.run_id)
    features = window[list(loaded.feature_names)]
    scores = loaded.predict_scores(window)
    alerted = features[scores >= loaded.thresholds.review].to_numpy(dtype=float)
    if len(alerted) == 0:
        raise SystemExit("the model's test window has no alerted rows to explain")
    table_bytes = treeshap.TABLE_BYTES if args.table_bytes is None else args.table_bytes

    compiled = loaded.matrix_model()
    compiled.reason_codes(alerted[:2])  # compiled code is loaded from cache on first use
    build = _median_ms(lambda _: loaded.matrix_model(), 3, time.process_time)
    forest = compiled.coder.forest
    build_tables = 0.0
    if forest is not None:
        build_tables = _median_ms(
            lambda _: treeshap.flatten_hist_gradient_boosting(loaded.model, table_bytes),
            3,
            time.process_time,
        )
        if table_bytes != treeshap.TABLE_BYTES:
            forest = treeshap.flatten_hist_gradient_boosting(loaded.model, table_bytes)
            compiled.coder.forest = forest

    explainer: Any = None
    if args.with_shap:
        import shap

        explainer = shap.TreeExplainer(loaded.model)
    results: dict[str, Any] = {
        "model": f"{loaded.name} v{loaded.version}",
        "trees": None if forest is None else len(forest.roots),
        "model_build_cpu_ms": round(build, 1),
        "batches": [],
    }
    if forest is not None:
        results.update(
            flatten_cpu_ms=round(build_tables, 1),
            table_bytes=int(forest.tables.nbytes),
            paths=len(forest.path_table),
            tabulated_paths=int((forest.path_table >= 0).sum()),
            max_features_on_a_path=int(forest.path_elements[:, 1].max()),
            tabulated_up_to=forest.table_max_elements,
        )

    def batch(size: int, repeat: int) -> Any:
        start = (repeat * size) % max(1, len(alerted) - size)
        return alerted[start : start + size]

    def ours(size: int, repeat: int) -> Any:
        return compiled.reason_codes(batch(size, repeat))

    def shaps(size: int, repeat: int) -> Any:
        return explainer.shap_values(batch(size, repeat), check_additivity=False)

    title = f"reason codes, {results['model']} ({results['trees']} trees)"
    table = Table(title=title)
    for column in ("rows", "ms per batch", "CPU ms per batch", "CPU ms per row", "shap ms"):
        table.add_column(column, justify="right")
    for size in (int(s) for s in args.sizes.split(",")):
        rows = batch(size, 0)
        wall = _median_ms(functools.partial(ours, size), args.repeats)
        cpu = _median_ms(functools.partial(ours, size), args.repeats, time.process_time)
        theirs = None
        if explainer is not None:
            theirs = _median_ms(functools.partial(shaps, size), args.repeats)
        results["batches"].append(
            {
                "rows": len(rows),
                "ms": round(wall, 3),
                "cpu_ms": round(cpu, 3),
                "cpu_ms_per_row": round(cpu / len(rows), 3),
                "shap_ms": theirs and round(theirs, 2),
            }
        )
        table.add_row(
            str(len(rows)),
            f"{wall:.2f}",
            f"{cpu:.2f}",
            f"{cpu / len(rows):.3f}",
            "-" if theirs is None else f"{theirs:.1f}",
        )
    Console().print(table)
    if forest is not None:
        Console().print(
            f"model prepared in {build:.0f} ms CPU (flattening its trees and building the "
            f"tables: {build_tables:.0f} ms); tables {forest.tables.nbytes / 2**20:.1f} MiB for "
            f"{results['tabulated_paths']} of {results['paths']} paths (those with up to "
            f"{forest.table_max_elements} features)"
        )
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
