"""Open-loop senders over HTTP for tests and benchmarks: one geventhttpclient connection pool shared
by the dispatcher's greenlets, as a Locust FastHttpSession would be."""

from __future__ import annotations

from collections.abc import Callable

from geventhttpclient import HTTPClient


def http_sender(
    url: str, max_in_flight: int, path: str = "/", timeout_s: float = 60.0
) -> Callable[[bytes | None, float], int]:
    """``send(body, planned_at) -> HTTP status``: a GET without a body, a JSON POST with one.

    Connection errors propagate: in these tests the server is local and must answer.
    """
    client = HTTPClient.from_url(
        url, concurrency=max_in_flight, connection_timeout=10, network_timeout=timeout_s
    )
    headers = {"Content-Type": "application/json"}

    def send(body: bytes | None, _planned_at: float) -> int:
        response = client.get(path) if body is None else client.post(path, body=body, headers=headers)
        response.read()
        return response.status_code

    return send
