"""Run a contract double as a local subprocess, as a test's stand-in for the hosted service."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.doubles.common import READY_LINE

REPO = Path(__file__).resolve().parents[2]


class DoubleFailed(RuntimeError):
    pass


@dataclass
class DoubleServer:
    url: str
    process: subprocess.Popen[str]

    def ledger(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/__double__/ledger", timeout=5) as response:
            return json.loads(response.read())

    def kill(self) -> None:
        """Kill hard, as a crashed server would die: no goodbye to open connections."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@contextlib.contextmanager
def running_double(module: str, *args: str, timeout_s: float = 30.0) -> Iterator[DoubleServer]:
    """Start ``python -m tests.doubles.<module> --port 0 ARGS``; yield once it prints its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", f"tests.doubles.{module}", "--host", "127.0.0.1", "--port", "0", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    server = DoubleServer("", process)
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + timeout_s
        while not server.url:
            if process.poll() is not None or time.monotonic() > deadline:
                raise DoubleFailed(f"double {module} did not start (exit code {process.poll()})")
            ready, _, _ = select.select([process.stdout], [], [], 0.5)
            if ready:
                line = process.stdout.readline()
                if line.startswith(READY_LINE):
                    server.url = line.split()[-1]
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
