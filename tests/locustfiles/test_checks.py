"""Response checks and failure classes (pure functions, exercised with real sockets where it matters)."""

from __future__ import annotations

import json
import socket
import threading

import pytest
import requests

from locustfiles.checks import (
    BadBody,
    Embeddings,
    RequestFailure,
    backoff_seconds,
    check_embeddings,
    classify_exception,
    http_failure,
    parse_json,
    tokens_embedded,
)
from tests.locustfiles.runs import free_port


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
    ],
)
def test_wrong_bodies_are_named(result, inputs, message):
    assert check_embeddings(result, inputs, None) == message


def test_tokens_are_the_servers_usage_else_batch_times_passage_tokens():
    assert tokens_embedded(Embeddings(vectors(32), 32 * 258), 32, 256) == 32 * 258
    assert tokens_embedded(Embeddings(vectors(32), None), 32, 512) == 32 * 512


def test_json_nan_and_infinity_literals_are_bad_bodies():
    for literal in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(BadBody, match="non-finite"):
            parse_json(f'{{"embeddings": [[0.1, {literal}]]}}'.encode())
    with pytest.raises(BadBody, match="not JSON"):
        parse_json(b"<html>bad gateway</html>")


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
    assert http_failure(status, requests.structures.CaseInsensitiveDict(headers), content) == message


def test_backoff_honours_retry_after_and_pauses_after_a_bare_429():
    assert backoff_seconds(429, {"Retry-After": "2.5"}) == 2.5
    assert backoff_seconds(503, {"Retry-After": "3600"}) == 30.0
    assert backoff_seconds(429, {}) == 1.0
    assert backoff_seconds(500, {}) == 0.0


def test_a_failure_shows_as_its_message_in_locusts_failure_table():
    assert repr(RequestFailure("HTTP 429 RATE_TOKEN_LIMIT_EXCEEDED")) == "HTTP 429 RATE_TOKEN_LIMIT_EXCEEDED"


def test_connection_refused_is_named():
    with pytest.raises(requests.RequestException) as caught:
        requests.post(f"http://127.0.0.1:{free_port()}/embed", json={}, timeout=5)
    assert classify_exception(caught.value) == "connection refused"


def test_a_silent_server_is_a_timeout_and_a_dropped_connection_is_named():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []

    def serve(close: bool) -> None:
        connection, _ = listener.accept()
        connection.recv(65536)
        if close:
            connection.close()
        else:
            accepted.append(connection)

    try:
        thread = threading.Thread(target=serve, args=(False,), daemon=True)
        thread.start()
        with pytest.raises(requests.RequestException) as caught:
            requests.post(f"http://127.0.0.1:{port}/embed", json={}, timeout=0.5)
        assert classify_exception(caught.value) == "timeout"
        thread.join(5)
        thread = threading.Thread(target=serve, args=(True,), daemon=True)
        thread.start()
        with pytest.raises(requests.RequestException) as caught:
            requests.post(f"http://127.0.0.1:{port}/embed", json={}, timeout=5)
        assert classify_exception(caught.value) in {"connection closed", "connection reset"}
        thread.join(5)
    finally:
        for connection in accepted:
            connection.close()
        listener.close()
