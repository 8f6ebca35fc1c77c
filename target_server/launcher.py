"""Start the real target server as a subprocess on a loopback port and wait until it is ready.

Used by ``embed-bench demo``, the benchmarks and the tests: all of them need the server exactly as a
user runs it (``python -m target_server`` under gunicorn), not an in-process stand-in.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path


class ServerFailed(RuntimeError):
    """The server exited or did not become ready; the message carries the end of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def http_status(url: str, timeout_s: float = 2.0) -> int | None:
    """The status of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def wait_healthy(
    url: str, timeout_s: float, process: subprocess.Popen | None = None, log: Path | None = None
) -> None:
    """Poll ``GET /health`` until 200; fail early if ``process`` exits."""

    def tail() -> str:
        return log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""

    deadline = time.monotonic() + timeout_s
    while http_status(f"{url}/health") != 200:
        if process is not None and process.poll() is not None:
            raise ServerFailed(f"server exited with {process.returncode}:\n{tail()}")
        if time.monotonic() > deadline:
            raise ServerFailed(f"{url} not ready after {timeout_s:g} s:\n{tail()}")
        time.sleep(0.25)


@contextlib.contextmanager
def running_target_server(
    *args: str,
    timeout_s: float = 120,
    env: dict[str, str] | None = None,
    port: int | None = None,
    log_path: Path | None = None,
) -> Iterator[str]:
    """Yield the base URL of a ready server (``/health`` 200); stop it (SIGTERM, then SIGKILL) on exit.

    ``args`` are ``python -m target_server`` flags; the server log goes to ``log_path`` (kept) or to
    a temporary file (removed).
    """
    port = port or free_port()
    command = [sys.executable, "-m", "target_server", "--host", "127.0.0.1", "--port", str(port), *args]
    with running_http_server(command, port, timeout_s=timeout_s, env=env, log_path=log_path) as url:
        yield url


@contextlib.contextmanager
def running_http_server(
    command: list[str],
    port: int,
    *,
    timeout_s: float,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    cwd: Path | None = None,
) -> Iterator[str]:
    """Start ``command`` (a server listening on 127.0.0.1:``port`` with ``GET /health``) in its own
    process group, yield its URL once healthy, stop it on exit. Its output goes to ``log_path``
    (kept) or to a temporary file (removed); ``env`` is added to this process's environment."""
    keep_log = log_path is not None
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="target-server-", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, timeout_s, process, log_path)
        yield url
    finally:
        stop(process)
        if not keep_log:
            log_path.unlink(missing_ok=True)


def stop(process: subprocess.Popen, grace_s: float = 15, signum: int = signal.SIGTERM) -> None:
    """``signum`` (SIGTERM) to the process group (gunicorn master and worker), SIGKILL if it lingers."""
    # Signal the group even if the gunicorn master is gone: its worker may still hold the model.
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
