"""py-spy recording a running process and its children: `cpu` (running samples only) and
`wall` (every sample).

    with SamplingRecorder(pid, out_dir, rate_hz=200) as recorder:
        ...                                  # the process works
    recorder.files                           # {"cpu": Path, "wall": Path}: py-spy raw stacks

py-spy reads the target's memory from outside (`--nonblocking`: the target is never paused), so
call-heavy code is not slowed the way cProfile slows it; it needs the right to trace the process
(root, or ptrace allowed). Recording stops on SIGINT, when py-spy writes its file.
`bench/sampling.py` reads the files.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from fraud.errors import FraudScorerError

KINDS = ("cpu", "wall")


def py_spy_path() -> str:
    """py-spy beside this interpreter (the project's .venv), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file():
        return str(beside)
    found = shutil.which("py-spy")
    if found is None:
        raise FraudScorerError(
            "py-spy is not installed; run `make setup` (it is a dev dependency) or use --no-profile"
        )
    return found


def record_command(py_spy: str, pid: int, out: Path, rate_hz: int, idle: bool) -> list[str]:
    command = [py_spy, "record", "--pid", str(pid), "--format", "raw", "-o", str(out)]
    command += ["--rate", str(rate_hz), "--nonblocking", "--threads", "--full-filenames"]
    command += ["--function"]  # a function's samples on one line, whatever line was running
    command += ["--subprocesses"]  # the store process (FRAUD_STORE_PROCESS=1) is the worker's
    return [*command, "--idle"] if idle else command


class SamplingRecorder:
    """Two py-spy recorders on `pid`, started on entry and stopped (files written) on exit."""

    def __init__(self, pid: int, out_dir: Path, rate_hz: int = 200, prefix: str = "worker") -> None:
        self.pid = pid
        self.rate_hz = rate_hz
        self.files = {kind: out_dir / f"{prefix}-{kind}.pyspy.txt" for kind in KINDS}
        self.logs = {kind: out_dir / f"{prefix}-{kind}.pyspy.log" for kind in KINDS}
        self.started_at = 0.0
        self.stopped_at = 0.0
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        py_spy = py_spy_path()
        for kind in KINDS:
            with self.logs[kind].open("wb") as log_file:
                self._processes[kind] = subprocess.Popen(
                    record_command(
                        py_spy, self.pid, self.files[kind], self.rate_hz, kind == "wall"
                    ),
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
        self.started_at = time.monotonic()
        time.sleep(0.3)  # attaching takes a moment; a refusal shows as an early exit
        for kind, process in self._processes.items():
            if process.poll() is not None:
                self.stop()
                raise FraudScorerError(
                    f"py-spy ({kind}) exited at once: {self.logs[kind].read_text()[-1000:]}"
                )

    def stop(self, timeout_s: float = 30.0) -> None:
        self.stopped_at = time.monotonic()
        for process in self._processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self._processes.values():
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self._processes = {}

    @property
    def window_s(self) -> float:
        return max(0.0, self.stopped_at - self.started_at)

    def read(self, kind: str) -> str:
        path = self.files[kind]
        if not path.is_file():
            raise FraudScorerError(f"py-spy wrote no {kind} profile; see {self.logs[kind]}")
        return path.read_text(errors="replace")

    def __enter__(self) -> SamplingRecorder:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._processes:
            self.stop()
