"""docker/healthcheck.py: healthy only on a 200, never on a 503 (model loading), refusal or bad URL."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from target_server.launcher import free_port
from tests.deploy.scripts import docker_script


class _Health(http.server.BaseHTTPRequestHandler):
    """/health 200, /loading 503: the two answers of the real server's /health."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 503)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_exit_code_follows_the_status(base_url: str, capsys) -> None:
    check = docker_script("healthcheck").main
    assert check([f"{base_url}/health"]) == 0
    assert check([f"{base_url}/loading"]) == 1
    assert check([f"http://127.0.0.1:{free_port()}/health", "--timeout", "2"]) == 1
    assert check(["not a url"]) == 1
    assert "unhealthy: not a url" in capsys.readouterr().err
