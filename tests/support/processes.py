"""Run project commands as real processes in tests (workers, producers), with their logs kept."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.stack import ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def fraud_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "fraud.cli", *args]


@contextmanager
def running(
    args: list[str], env: Mapping[str, str], log_path: Path, port: int | None = None
) -> Iterator[Proc]:
    """Start a process with the given environment added; SIGTERM (then SIGKILL) at exit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(
            args, cwd=ROOT, env={**os.environ, **env}, stdout=log_file, stderr=subprocess.STDOUT
        )
    proc = Proc(popen, log_path, port)
    try:
        yield proc
    finally:
        proc.kill(signal.SIGTERM)


def wait_healthy(proc: Proc, timeout_s: float = 90.0) -> dict:
    """Poll GET /health until it answers 200; fail with the process log otherwise."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise AssertionError(
                f"process exited with {proc.popen.returncode}:\n{proc.log()[-4000:]}"
            )
        try:
            response = httpx.get(proc.url("/health"), timeout=2)
            last = response.text
            if response.status_code == 200:
                return response.json()
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise AssertionError(f"not healthy within {timeout_s} s (last: {last}):\n{proc.log()[-4000:]}")
