"""Where `embed-bench serve` listens: 127.0.0.1 unless told otherwise, and a warning when it faces a
network without an API key."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from target_server.cli import build_parser, exposure_warning, faces_a_network
from target_server.launcher import free_port, stop
from tests.support.target import REPO

WARNING = "without an API key: anyone who reaches this address can send work to the model"


def test_the_default_bind_address_is_loopback() -> None:
    assert build_parser().parse_args([]).host == "127.0.0.1"
    assert build_parser().parse_args(["--bind", "0.0.0.0"]).host == "0.0.0.0"  # --bind: --host's alias


@pytest.mark.parametrize(
    ("host", "faces"),
    [("127.0.0.1", False), ("127.9.9.9", False), ("::1", False), ("[::1]", False), ("localhost", False),
     ("0.0.0.0", True), ("::", True), ("10.1.2.3", True), ("embeddings.internal", True)],
)  # fmt: skip
def test_what_faces_a_network(host: str, faces: bool) -> None:
    assert faces_a_network(host) is faces
    warning = exposure_warning(host, 8000, None)
    assert (warning is not None) is faces
    assert exposure_warning(host, 8000, "a-key") is None


def _start(log: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "EMBED_BENCH_API_KEY"}
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "target_server", "--batching", "none", "--no-warmup", *args],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env,
        )  # fmt: skip


def _wait_for(log: Path, text: str, process: subprocess.Popen, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        content = log.read_text(errors="replace")
        if text in content:
            return content
        assert process.poll() is None, content
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the log:\n{log.read_text(errors='replace')}")


def _other_address() -> str | None:
    """An address of this machine beyond loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route's address
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_serve_listens_on_loopback_only_by_default_and_quietly(tmp_path: Path, spawn: None) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    process = _start(log, "--port", str(port))
    try:
        content = _wait_for(log, "Listening at", process)
        assert f"Listening at: http://127.0.0.1:{port}" in content
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        other = _other_address()
        if other is not None:
            with pytest.raises(OSError):
                socket.create_connection((other, port), timeout=2).close()
        assert WARNING not in content
    finally:
        stop(process)


def test_serve_warns_when_it_faces_a_network_without_a_key(tmp_path: Path, spawn: None) -> None:
    log = tmp_path / "open.log"
    process = _start(log, "--host", "0.0.0.0", "--port", str(free_port()))
    try:
        content = _wait_for(log, WARNING, process)
        assert "Pass --api-key KEY (or set EMBED_BENCH_API_KEY)" in content
    finally:
        stop(process)
    log = tmp_path / "keyed.log"
    process = _start(log, "--host", "0.0.0.0", "--port", str(free_port()), "--api-key", "k-123")
    try:
        content = _wait_for(log, "Listening at", process)
        assert WARNING not in content
    finally:
        stop(process)
