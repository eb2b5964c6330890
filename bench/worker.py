"""The worker under test: a champion to score with, the `fraud worker` process, its CPU time.

The benchmark runs the real `fraud worker` as a separate process, configured only through the
environment (private topics, consumer group, Redis prefix, web port and MLflow state folder),
exactly as an operator would start it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.results import CpuReading, StageBuckets
from fraud.errors import FraudScorerError, ModelNotFoundError
from fraud.settings import PROJECT_ROOT, Settings

# A private store must not be overridden by a tracking server configured in the shell.
_STORE_OVERRIDES = ("MLFLOW_TRACKING_URI", "FRAUD_MLFLOW_TRACKING_URI")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _STORE_OVERRIDES}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- champion ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Champion:
    state_dir: Path
    version: str
    trained: bool  # False when an existing champion was reused
    seconds: float


def champion_version(state_dir: Path) -> str | None:
    """The version at @champion in the MLflow store under `state_dir`, if any."""
    from stream.scoring import open_store, version_at_alias

    if not (state_dir / "mlflow" / "mlflow.db").is_file():
        return None
    settings = Settings(state_dir=state_dir, mlflow_tracking_uri=None)
    found = version_at_alias(open_store(settings), settings.model_name, settings.model_alias)
    return None if found is None else str(found.version)


def _fraud(args: list[str], state_dir: Path, log_path: Path) -> None:
    command = [sys.executable, "-m", "fraud.cli", *args]
    with log_path.open("ab") as log_file:
        result = subprocess.run(
            command,
            cwd=PROJECT_ROOT,
            env=child_env({"FRAUD_STATE_DIR": str(state_dir)}),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            timeout=900,
        )
    if result.returncode != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise FraudScorerError(f"`fraud {args[0]}` failed (exit {result.returncode}):\n{tail}")


def prepare_champion(
    state_dir: Path,
    scratch: Path,
    customers: int = 400,
    days: int = 35,
    seed: int = 5,
) -> Champion:
    """Reuse the champion under `state_dir`, or train a small one there (as the integration
    fixtures do) and promote it, forcing the promotion when a gate fails on so small a bank:
    the benchmark needs a model of the real kind, not a good one."""
    began = time.perf_counter()
    version = champion_version(state_dir)
    if version is not None:
        return Champion(state_dir, version, False, time.perf_counter() - began)
    history = scratch / "history"
    log_path = scratch / "train.log"
    simulate = ["simulate", "--customers", str(customers), "--days", str(days)]
    _fraud([*simulate, "--seed", str(seed), "--out", str(history)], state_dir, log_path)
    train = ["train", "--data", str(history / "transactions.parquet"), "--no-baseline"]
    windows = ["--test-days", "7", "--validation-days", "7", "--warmup-days", "3"]
    outputs = ["--results-dir", str(scratch / "train-results")]
    outputs += ["--model-card", str(scratch / "model_card.md")]
    _fraud([*train, *windows, *outputs], state_dir, log_path)
    version = champion_version(state_dir)
    if version is None:
        from stream.scoring import open_store

        settings = Settings(state_dir=state_dir, mlflow_tracking_uri=None)
        versions = open_store(settings).search_model_versions(f"name='{settings.model_name}'")
        if not versions:
            raise ModelNotFoundError(f"training registered no model; see {log_path}")
        latest = str(max(int(v.version) for v in versions))
        _fraud(
            ["promote", "--version", latest, "--force", "--reason", "benchmark model"],
            state_dir,
            log_path,
        )
        version = champion_version(state_dir)
    if version is None:
        raise ModelNotFoundError(f"no champion after training; see {log_path}")
    return Champion(state_dir, version, True, time.perf_counter() - began)


# --- the worker process --------------------------------------------------------------------


def cpu_seconds_from_stat(stat: str, ticks_per_s: int = CLOCK_TICKS) -> float:
    """utime + stime of a /proc/<pid>/stat line (the command name may contain spaces)."""
    fields = stat[stat.rindex(")") + 2 :].split()
    # Fields after the name start at field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / ticks_per_s


def tree_cpu_seconds(pid: int, proc: Path = Path("/proc")) -> float:
    """CPU seconds of a process and of its live descendants (a worker's feature store process,
    FRAUD_STORE_PROCESS=1, is part of the worker's cost)."""
    children: dict[int, list[int]] = {}
    seconds: dict[int, float] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
        seconds[int(entry.name)] = cpu_seconds_from_stat(stat)
    if pid not in seconds:
        raise OSError(f"no process {pid}")
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        total += seconds.get(current, 0.0)
        pending.extend(children.get(current, []))
    return total


WORKER_COMMAND = ("fraud.cli", "worker")


def stage_buckets(metrics_text: str) -> StageBuckets:
    """fraud_batch_stage_seconds from a /metrics page: per stage, (upper bound, cumulative
    count) of each bucket in ascending order."""
    stages: StageBuckets = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "fraud_batch_stage_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                stages.setdefault(sample.labels["stage"], []).append((bound, sample.value))
    return {stage: sorted(buckets) for stage, buckets in stages.items()}


class WorkerProcess:
    """`fraud worker` (or another module: `command`) as a child process; optionally under
    bench.profile (cProfile)."""

    def __init__(
        self,
        env: Mapping[str, str],
        port: int,
        log_path: Path,
        profile_out: Path | None = None,
        command: Sequence[str] = WORKER_COMMAND,
    ) -> None:
        self.port = port
        self.log_path = log_path
        self.profile_out = profile_out
        launcher = [sys.executable, "-m"]
        if profile_out is not None:
            launcher += ["bench.profile", str(profile_out), "-m"]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log_file:
            self.popen = subprocess.Popen(
                [*launcher, *command],
                cwd=PROJECT_ROOT,
                env=child_env(env),
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_healthy(self, timeout_s: float = 180.0) -> float:
        """Poll /health until 200; returns the seconds it took."""
        began = time.monotonic()
        last = ""
        while time.monotonic() - began < timeout_s:
            if self.popen.poll() is not None:
                raise FraudScorerError(
                    f"worker exited with {self.popen.returncode} while starting:\n"
                    + self.log_tail()
                )
            try:
                response = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2)
                if response.status_code == 200:
                    return time.monotonic() - began
                last = response.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.5)
        raise FraudScorerError(
            f"worker not healthy within {timeout_s:.0f} s (last: {last}):\n{self.log_tail()}"
        )

    def batch_stages(self) -> StageBuckets:
        """The worker's fraud_batch_stage_seconds buckets now, per stage ({} when /metrics
        does not answer: the table then leaves the stages out)."""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        except httpx.HTTPError:
            return {}
        return stage_buckets(text)

    def cpu_seconds(self) -> float | None:
        try:
            return tree_cpu_seconds(self.popen.pid)
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, timeout_s: float = 90.0) -> int | None:
        """SIGTERM (the worker shuts down cleanly and a profile is written), then SIGKILL."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return self.popen.returncode


def machine_busy_seconds_from_stat(stat: str, ticks_per_s: int = CLOCK_TICKS) -> float:
    """CPU seconds all cores spent busy (not idle, not waiting for I/O), from /proc/stat."""
    values = [int(v) for v in stat.splitlines()[0].split()[1:9]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / ticks_per_s


def machine_busy_seconds() -> float | None:
    try:
        return machine_busy_seconds_from_stat(Path("/proc/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class CpuSample:
    at: float  # monotonic seconds
    worker: float | None
    machine: float | None
    outputs: int | None = None  # events finished when sampled, if known


class CpuMeter:
    """The worker's CPU, and every other process's, between a first and a last sample.

    On a shared machine the worker only gets what the others leave: both are reported so that
    a low rate can be told apart from a starved worker.
    """

    def __init__(
        self,
        read_worker: Callable[[], float | None],
        read_machine: Callable[[], float | None] = machine_busy_seconds,
    ) -> None:
        self._read_worker = read_worker
        self._read_machine = read_machine
        self.first: CpuSample | None = None
        self.last: CpuSample | None = None
        self._seen = -1

    def mark(self, outputs: int | None = None) -> None:
        sample = CpuSample(time.monotonic(), self._read_worker(), self._read_machine(), outputs)
        if self.first is None:
            self.first = sample
        self.last = sample

    def observe(self, count: int) -> None:
        """Poll callback: samples only when the count of outputs moved (and is not 0), so the
        marks bracket the span in which the worker made progress."""
        if count != self._seen and count > 0:
            self.mark(count)
        self._seen = count

    def reading(self) -> CpuReading | None:
        """CPU between the first and the last sample (None before two samples)."""
        first, last = self.first, self.last
        if first is None or last is None or last.at <= first.at:
            return None
        worker = _delta(first.worker, last.worker)
        machine = _delta(first.machine, last.machine)
        others = None if worker is None or machine is None else max(0.0, machine - worker)
        outputs = _delta(first.outputs, last.outputs)
        return CpuReading(
            wall_s=last.at - first.at,
            worker_cpu_s=worker,
            others_cpu_s=others,
            outputs=None if outputs is None else int(outputs),
        )


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def cpu_seconds_of(processes: Sequence[WorkerProcess]) -> Callable[[], float | None]:
    """A reader of the summed CPU seconds of several worker processes."""

    def read() -> float | None:
        values = [process.cpu_seconds() for process in processes]
        return None if any(v is None for v in values) else sum(v for v in values if v is not None)

    return read
