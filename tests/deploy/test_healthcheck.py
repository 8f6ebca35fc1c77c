"""docker/healthcheck.py: healthy only on a 200, never on a 503 (model loading), refusal or bad URL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from target_server.launcher import free_port
from tests.deploy.scripts import docker_script
from tests.support.json_server import json_server


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """/health 200, /loading 503: the two answers of the real server's /health."""
    with json_server(lambda path: (200, {}) if path == "/health" else (503, {})) as url:
        yield url


def test_exit_code_follows_the_status(base_url: str, capsys) -> None:
    check = docker_script("healthcheck").main
    assert check([f"{base_url}/health"]) == 0
    assert check([f"{base_url}/loading"]) == 1
    assert check([f"http://127.0.0.1:{free_port()}/health", "--timeout", "2"]) == 1
    assert check(["not a url"]) == 1
    assert "unhealthy: not a url" in capsys.readouterr().err
