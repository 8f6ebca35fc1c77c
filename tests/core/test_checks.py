"""Response checks and failure classes (pure functions, exercised with real sockets and the real
client, geventhttpclient, where it matters)."""

from __future__ import annotations

import json
import socket
import threading

import pytest
from geventhttpclient.header import Headers
from geventhttpclient.useragent import UserAgent

from embed_bench.core.checks import (
    BadBody,
    Embeddings,
    RequestFailure,
    backoff_seconds,
    check_embeddings,
    classify_exception,
    http_failure,
    parse_json,
)
from tests.load.runs import free_port


def vectors(count: int, dimension: int = 4) -> list[list[float]]:
    return [[0.5] * dimension for _ in range(count)]


def test_a_right_body_passes_and_a_known_dimension_is_enforced():
    assert check_embeddings(Embeddings(vectors(3), 12), 3, None) is None
    assert check_embeddings(Embeddings(vectors(3), 12), 3, 4) is None
    assert check_embeddings(Embeddings(vectors(3, 5), 12), 3, 4) == "bad body: dimension 5, expected 4"


@pytest.mark.parametrize(
    ("result", "inputs", "message"),
    [
        (Embeddings(vectors(31), None), 32, "bad body: 31 embeddings for 32 inputs"),
        (Embeddings([[0.1, 0.2], [0.1]], None), 2, "bad body: embeddings of dimensions [1, 2]"),
        (Embeddings([[], []], None), 2, "bad body: empty embedding"),
        (Embeddings([[0.1], "x"], None), 2, "bad body: an embedding is not a list"),
        (Embeddings([[0.1, float("inf")]], None), 1, "bad body: non-finite embedding values"),
        (Embeddings([[0.1, float("nan")]], None), 1, "bad body: non-finite embedding values"),
        (Embeddings([[0.1, "0.2"]], None), 1, "bad body: non-numeric embedding values"),
        (Embeddings([[0.5] * 1024] * 127 + [[0.5] * 1023 + [float("nan")]], None), 128,
         "bad body: non-finite embedding values"),
    ],
)  # fmt: skip
def test_wrong_bodies_are_named(result, inputs, message):
    assert check_embeddings(result, inputs, None) == message


def test_finite_values_whose_sum_overflows_are_no_failure():
    assert check_embeddings(Embeddings([[1e308, 1e308], [1e308, 1e308]], None), 2, None) is None


def test_json_nan_and_infinity_literals_are_bad_bodies():
    for literal in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(BadBody, match="non-finite"):
            parse_json(f'{{"embeddings": [[0.1, {literal}]]}}'.encode())
    for body in (b"<html>bad gateway</html>", b"", None):
        with pytest.raises(BadBody, match="not JSON"):
            parse_json(body)
    assert parse_json(b'{"embeddings": [[0.25, -1e-3]]}') == {"embeddings": [[0.25, -0.001]]}


@pytest.mark.parametrize(
    ("status", "headers", "body", "message"),
    [
        (429, {}, {"detail": "Token rate limit", "code": "RATE_TOKEN_LIMIT_EXCEEDED"}, "HTTP 429 RATE_TOKEN_LIMIT_EXCEEDED"),
        (413, {}, {"error": "too big", "error_type": "payload_too_large"}, "HTTP 413 payload_too_large"),
        (400, {}, {"error": {"message": "m", "type": "invalid_request_error", "code": None}}, "HTTP 400 invalid_request_error"),
        (422, {}, {"detail": "Validation error", "errors": []}, "HTTP 422"),
        (502, {}, None, "HTTP 502"),
        (400, {"x-amzn-ErrorType": "ThrottlingException:http://internal.amazon.com/"}, {"message": None},
         "HTTP 400 ThrottlingException"),
        (424, {"x-amzn-ErrorType": "ModelError:http://internal.amazon.com/"},
         {"OriginalStatusCode": 500, "OriginalMessage": "CUDA"}, "HTTP 424 ModelError: container returned 500"),
        (424, {"x-amzn-ErrorType": "ModelError:http://internal.amazon.com/"},
         {"Message": "Your invocation timed out while waiting for a response from container primary."},
         "HTTP 424 ModelError: container timeout"),
    ],
)  # fmt: skip
def test_http_failures_carry_the_backends_error_code(status, headers, body, message):
    content = json.dumps(body).encode() if body is not None else b"<html>bad gateway</html>"
    assert http_failure(status, Headers(headers), content) == message


def test_backoff_honours_retry_after_and_pauses_after_a_bare_429():
    assert backoff_seconds(429, {"Retry-After": "2.5"}) == 2.5
    assert backoff_seconds(503, {"Retry-After": "3600"}) == 30.0
    assert backoff_seconds(429, {}) == 1.0
    assert backoff_seconds(500, {}) == 0.0


def test_a_failure_shows_as_its_message_in_locusts_failure_table():
    assert repr(RequestFailure("HTTP 429 RATE_TOKEN_LIMIT_EXCEEDED")) == "HTTP 429 RATE_TOKEN_LIMIT_EXCEEDED"


def post(url: str, timeout_s: float) -> BaseException:
    """What FastHttpUser's client raises for a POST that gets no (complete) response."""
    agent = UserAgent(max_retries=0, network_timeout=timeout_s, connection_timeout=timeout_s)
    with pytest.raises(Exception) as caught:
        agent.urlopen(url, method="POST", payload=b"{}").content  # noqa: B018 (reads the body)
    return caught.value


def test_connection_refused_and_an_unknown_host_are_named():
    assert classify_exception(post(f"http://127.0.0.1:{free_port()}/embed", 5)) == "connection refused"
    assert classify_exception(post("http://embed-bench.invalid/embed", 5)) == "host not resolved"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (None, {"timeout"}),
        (b"", {"connection closed", "connection reset"}),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{", {"connection closed"}),
    ],
)
def test_a_silent_server_is_a_timeout_and_a_dropped_connection_is_named(answer, expected, spawn: None):
    """None: never answers; b"": closes at once; else: sends this, then closes mid-body."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []

    def serve() -> None:
        connection, _ = listener.accept()
        connection.recv(65536)
        if answer is None:
            accepted.append(connection)
            return
        connection.sendall(answer)
        connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert classify_exception(post(f"http://127.0.0.1:{port}/embed", 0.5)) in expected
        thread.join(5)
    finally:
        for connection in accepted:
            connection.close()
        listener.close()
