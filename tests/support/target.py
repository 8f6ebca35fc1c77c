"""Start the real target server (``python -m target_server``, gunicorn) on a free loopback port."""

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

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_status(url: str, timeout_s: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


class ServerFailed(RuntimeError):
    pass


@contextlib.contextmanager
def running_target_server(
    *args: str, timeout_s: float = 120, env: dict[str, str] | None = None, port: int | None = None
) -> Iterator[str]:
    """Yield the base URL of a ready server (``/health`` 200); stop it (SIGTERM, then SIGKILL) on exit."""
    port = port or free_port()
    log = tempfile.NamedTemporaryFile(prefix="target-server-", suffix=".log", delete=False)  # noqa: SIM115
    command = [sys.executable, "-m", "target_server", "--host", "127.0.0.1", "--port", str(port), *args]
    process = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def tail() -> str:
        return Path(log.name).read_text(errors="replace")[-3000:]

    try:
        deadline = time.monotonic() + timeout_s
        while http_status(f"{url}/health") != 200:
            if process.poll() is not None:
                raise ServerFailed(f"server exited with {process.returncode}:\n{tail()}")
            if time.monotonic() > deadline:
                raise ServerFailed(f"server not ready after {timeout_s} s:\n{tail()}")
            time.sleep(0.25)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
        os.unlink(log.name)
