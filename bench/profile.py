"""Run a module under cProfile in every thread: `python -m bench.profile OUT -m MODULE ...`.

`python -m cProfile` sees only the main thread, but the Faust worker fetches from Kafka in a
consumer thread and flushes its producer in executor threads. Here each new thread starts its
own profiler (through `threading.setprofile`). At exit (SystemExit included: the worker exits
that way on SIGTERM) all of them are merged into OUT (pstats format), with the seconds of each
thread in OUT.threads.json. Timer: wall clock, as cProfile's default.

Steady state only: when the file OUT.start appears, everything profiled so far (imports, model
loading) is set aside, and when OUT.stop appears the profile is taken (shutdown is left out);
OUT holds the difference.
"""

from __future__ import annotations

import cProfile
import gc
import pstats
import runpy
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

# pstats entries: function -> (primitive calls, calls, self s, cumulative s, callers)
Entry = tuple[int, int, float, float, dict[Any, tuple[int, int, float, float]]]
Snapshot = list[dict[Any, Entry]]  # one dict per profiler, in registration order


class ThreadProfiles:
    def __init__(self, main: cProfile.Profile) -> None:
        self.names = ["MainThread"]
        self.profiles = [main]
        self._lock = threading.Lock()

    def start_in_this_thread(self, _frame: FrameType, _event: str, _arg: Any) -> None:
        # Called once per new thread as its Python-level profile hook; enabling a cProfile
        # profiler replaces this hook for the rest of the thread's life.
        profile = cProfile.Profile()
        with self._lock:
            self.names.append(threading.current_thread().name)
            self.profiles.append(profile)
        profile.enable()

    def snapshot(self) -> Snapshot:
        """Every profiler's statistics so far (they keep running)."""
        with self._lock:
            profiles = list(self.profiles)
        taken = []
        for profile in profiles:
            # getstats() walks the profiler's tree in C. A garbage collection inside it could run
            # Python finalizers, let the profiled thread take the GIL and reshape the tree under
            # the walk; without collections no bytecode runs, so the walk is atomic.
            gc.disable()
            try:
                profile.snapshot_stats()
            finally:
                gc.enable()
            taken.append(dict(profile.stats))  # type: ignore[attr-defined]
        return taken  # type: ignore[return-value]


def _minus(after: dict[Any, Entry], before: dict[Any, Entry]) -> dict[Any, Entry]:
    """Statistics accumulated between two snapshots of one profiler."""
    delta: dict[Any, Entry] = {}
    for func, (cc, nc, tt, ct, callers) in after.items():
        old = before.get(func)
        if old is not None:
            cc, nc, tt, ct = cc - old[0], nc - old[1], tt - old[2], ct - old[3]
            callers = {
                caller: tuple(
                    a - b for a, b in zip(v, old[4].get(caller, (0, 0, 0, 0)), strict=True)
                )  # type: ignore[misc]
                for caller, v in callers.items()
            }
            callers = {caller: v for caller, v in callers.items() if v[1] > 0}
        if nc > 0:
            delta[func] = (cc, nc, tt, ct, callers)
    return delta


class _Frozen:
    """What pstats.Stats accepts as a profile: an object with `stats` and `create_stats()`."""

    def __init__(self, stats: dict[Any, Entry]) -> None:
        self.stats = stats

    def create_stats(self) -> None:
        pass


def write_profile(out: Path, names: list[str], start: Snapshot, end: Snapshot) -> None:
    merged: pstats.Stats | None = None
    threads = []
    for index, stats in enumerate(end):
        delta = _minus(stats, start[index] if index < len(start) else {})
        if not delta:
            continue
        part = pstats.Stats(_Frozen(delta))  # type: ignore[arg-type]
        threads.append({"thread": names[index], "seconds": round(float(part.total_tt), 3)})  # type: ignore[attr-defined]
        if merged is None:
            merged = part
        else:
            merged.add(part)
    if merged is not None:
        merged.dump_stats(str(out))
    out.with_name(out.name + ".threads.json").write_bytes(orjson.dumps(threads))


class Markers:
    """Watches for OUT.start / OUT.stop (from an unprofiled thread) and snapshots then."""

    def __init__(self, out: Path, profiles: ThreadProfiles) -> None:
        self.start_file = out.with_name(out.name + ".start")
        self.stop_file = out.with_name(out.name + ".stop")
        self.profiles = profiles
        self.start: Snapshot = []
        self.end: Snapshot | None = None
        self._thread = threading.Thread(target=self._watch, name="profile-markers", daemon=True)
        self._thread.start()  # before the profile hook is installed: not profiled itself

    def _watch(self) -> None:
        while self.end is None:
            if not self.start and self.start_file.exists():
                self.start = self.profiles.snapshot()
            if self.stop_file.exists():
                self.end = self.profiles.snapshot()
            time.sleep(0.05)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "-m":
        print("usage: python -m bench.profile OUT -m MODULE [ARGS...]", file=sys.stderr)
        return 2
    out, module, args = Path(argv[0]), argv[2], argv[3:]
    main_profile = cProfile.Profile()
    profiles = ThreadProfiles(main_profile)
    markers = Markers(out, profiles)
    threading.setprofile(profiles.start_in_this_thread)
    sys.argv = [module, *args]
    code = 0
    main_profile.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    finally:
        main_profile.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
        end = markers.end if markers.end is not None else profiles.snapshot()
        write_profile(out, profiles.names, markers.start, end)
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))


# --- reading a profile ---------------------------------------------------------------------

# The worker's hot path, outermost first: (label, file suffix, function).
HOT_PATH = (
    ("agent: Faust events -> RawMessage", "stream/worker/app.py", "_messages"),
    ("BatchHandler.handle (whole batch)", "stream/worker/handler.py", "handle"),
    ("  admit: decode, PAN check, validate", "stream/worker/handler.py", "admit"),
    ("    schema validation", "schemas/__init__.py", "validate"),
    ("  features (Redis + feature kernels)", "stream/worker/handler.py", "features"),
    ("    Redis read round trip", "stream/features/redis_store.py", "_read"),
    ("    Redis write round trip", "stream/features/redis_store.py", "_write"),
    ("    batch_features (kernels)", "stream/features/definition.py", "batch_features"),
    ("    columns_from_events", "stream/features/encoding.py", "columns_from_events"),
    ("    feature_dicts", "stream/features/definition.py", "feature_dicts"),
    ("  score_batch", "stream/scoring/batch.py", "score_batch"),
    ("    ScoringModel.frame (DataFrame)", "stream/scoring/batch.py", "frame"),
    ("    predict_proba", "stream/scoring/registry.py", "predict_scores"),
    ("    reason codes (review/decline)", "stream/scoring/reasons.py", "reason_codes"),
    ("  _records (orjson.dumps outputs)", "stream/worker/handler.py", "_records"),
    ("  deliver (produce; flush awaited)", "stream/worker/output.py", "deliver"),
    ("    producer.produce per record", "stream/worker/output.py", "_produce"),
    ("    flush (executor thread)", "stream/worker/output.py", "_flush"),
    ("  _observe (Prometheus per decision)", "stream/worker/handler.py", "_observe"),
)

_ROOT = Path(__file__).resolve().parent.parent.as_posix()
_IDLE = ("epoll", "select", "acquire' of '_thread", "get' of '_queue", "wait' of", "sleep")


def area_of(filename: str, function: str) -> str:
    """A coarse owner for a profile entry: project module, third-party package, C builtin."""
    if filename == "~":
        if any(marker in function for marker in _IDLE):
            return "(waiting: poll/lock/sleep)"
        for marker, area in (
            ("cimpl", "confluent_kafka (C)"),
            ("orjson", "orjson (C)"),
            ("numpy", "numpy (C)"),
            ("_lsprof", "(profiler)"),
        ):
            if marker in function:
                return area
        return "other builtins"
    path = filename.replace("\\", "/")
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    for package in ("stream", "training", "schemas", "simulator", "fraud"):
        marker = f"/{package}/"
        if marker in path:
            return f"{package}/{path.rsplit(marker, 1)[1]}"
    if "/lib/python" in path:
        module = path.split("/lib/python", 1)[1].split("/", 2)
        return "stdlib " + (module[1].removesuffix(".py") if len(module) > 1 else "")
    return "other"


def summarize_profile(path: Path, top: int = 25, span_s: float | None = None) -> dict[str, Any]:
    """Hot-path cumulative seconds, self seconds by area, and the top functions by self time.

    Coroutine entries (handle, deliver) count only the time they run, not the time awaited.
    """
    stats = pstats.Stats(str(path))
    entries = stats.stats  # type: ignore[attr-defined]
    hot = []
    for label, suffix, name in HOT_PATH:
        matches = [
            value
            for (file, _line, func), value in entries.items()
            if func == name and file.replace("\\", "/").endswith(suffix)
        ]
        if matches:
            calls = sum(m[1] for m in matches)
            cumulative = sum(m[3] for m in matches)
            hot.append({"step": label, "calls": calls, "cumulative_s": round(cumulative, 3)})
    by_area: dict[str, float] = {}
    functions = []
    for (file, line, func), (_cc, calls, own, cumulative, _callers) in entries.items():
        area = area_of(file, func)
        by_area[area] = by_area.get(area, 0.0) + own
        functions.append((own, cumulative, calls, f"{_short(file)}:{line}({func})", area))
    functions.sort(reverse=True)
    threads_file = path.with_name(path.name + ".threads.json")
    threads = orjson.loads(threads_file.read_bytes()) if threads_file.is_file() else []
    total = sum(by_area.values())
    return {
        "file": str(path),
        "timer": "wall clock (cProfile default), every thread, from healthy to saturation end",
        "total_profiled_s": round(total, 3),
        "saturation_span_s": span_s,
        "threads": threads,
        "hot_path": hot,
        "self_time_by_area": [
            {"area": area, "self_s": round(seconds, 3), "share": round(seconds / total, 4)}
            for area, seconds in sorted(by_area.items(), key=lambda kv: -kv[1])
            if total > 0
        ][:top],
        "top_functions": [
            {
                "function": name,
                "area": area,
                "self_s": round(own, 3),
                "cumulative_s": round(cumulative, 3),
                "calls": calls,
            }
            for own, cumulative, calls, name, area in functions[:top]
        ],
    }


def _short(filename: str) -> str:
    path = filename.replace("\\", "/")
    for marker in ("site-packages/", f"{_ROOT}/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path
