"""The scoring workers of a chaos run: `fraud worker` processes in one consumer group, started,
killed, frozen and resumed by name, each (re)start on a fresh HTTP port with its own log.

    pool = WorkerPool(env, logs)
    pool.start("w1"); pool.kill("w1"); pool.start("w1")   # a supervisor's restart
    pool.freeze("w2"); pool.thaw("w2")                     # SIGSTOP / SIGCONT
    pool.assignment(bootstrap, topic)                      # member -> partitions, when stable
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from pathlib import Path

from bench.worker import WorkerProcess, free_port
from fraud.errors import FraudScorerError


class WorkerPool:
    def __init__(self, env: Mapping[str, str], logs: Path) -> None:
        self._env = dict(env)
        self._logs = logs
        self._workers: dict[str, WorkerProcess] = {}
        self._starts: dict[str, int] = {}
        self._ended: set[int] = set()  # pids this pool killed or stopped
        self.crashed: list[str] = []  # logs of workers that exited on their own

    @property
    def names(self) -> list[str]:
        """Workers whose process is alive (a frozen one included)."""
        return [name for name, w in self._workers.items() if w.popen.poll() is None]

    def worker(self, name: str) -> WorkerProcess:
        return self._workers[name]

    def start(self, name: str, wait: bool = True) -> WorkerProcess:
        if name in self.names:
            raise FraudScorerError(f"worker {name} is already running")
        self._note_crash(name)
        self._starts[name] = self._starts.get(name, 0) + 1
        port = free_port()
        log = self._logs / f"{name}-{self._starts[name]}.log"
        worker = WorkerProcess({**self._env, "FRAUD_WEB_PORT": str(port)}, port, log)
        self._workers[name] = worker
        if wait:
            worker.wait_healthy()
        return worker

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown, no commit, no leaving the group."""
        worker = self._workers[name]
        self._ended.add(worker.popen.pid)
        worker.popen.send_signal(signal.SIGKILL)
        worker.popen.wait(30)

    def freeze(self, name: str) -> None:
        self._workers[name].popen.send_signal(signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        self._workers[name].popen.send_signal(signal.SIGCONT)

    def stop(self, name: str) -> int | None:
        """SIGTERM: the worker finishes its batches, commits and leaves the group."""
        worker = self._workers[name]
        self._ended.add(worker.popen.pid)
        worker.popen.send_signal(signal.SIGCONT)  # a frozen worker cannot stop otherwise
        return worker.stop()

    def stop_all(self) -> None:
        for name in self.names:
            self.stop(name)

    def _note_crash(self, name: str) -> None:
        worker = self._workers.get(name)
        if worker is not None and worker.popen.poll() is not None:
            if worker.popen.pid not in self._ended:
                self.crashed.append(str(worker.log_path))

    def check(self) -> list[str]:
        """Logs of every worker that exited without being killed or stopped here."""
        for name in list(self._workers):
            self._note_crash(name)
        return sorted(set(self.crashed))
