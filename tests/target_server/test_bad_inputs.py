"""Every bad input gets its documented status and a JSON error; the real server stays healthy after each."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from tests.support.target import running_target_server

pytestmark = pytest.mark.usefixtures("spawn")

KEY = "test-key-5f3a"
AUTH = {"Authorization": f"Bearer {KEY}"}
JSON = {"Content-Type": "application/json", **AUTH}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with running_target_server("--api-key", KEY, "--max-batch-tokens", "2048", "--threads", "8") as url:
        yield url


CASES = {
    "non-JSON body": (dict(data=b"{not json", headers=JSON), 400, "invalid_request"),
    "wrong content type": (
        dict(data=b'{"texts": ["a"]}', headers={"Content-Type": "text/plain", **AUTH}),
        415,
        "unsupported_media_type",
    ),
    "no content type": (dict(data=b'{"texts": ["a"]}', headers=AUTH), 415, "unsupported_media_type"),
    "missing field": (dict(data=b'{"text": ["a"]}', headers=JSON), 400, "invalid_request"),
    "texts not a list": (dict(data=b'{"texts": "a"}', headers=JSON), 400, "invalid_request"),
    "text not a string": (dict(data=b'{"texts": ["a", 3]}', headers=JSON), 400, "invalid_request"),
    "truncate not a bool": (
        dict(data=b'{"texts": ["a"], "truncate": "no"}', headers=JSON),
        400,
        "invalid_request",
    ),
    "deeply nested JSON": (dict(data=b"[" * 100_000, headers=JSON), 400, "invalid_request"),
    "body not an object": (dict(data=b'["a"]', headers=JSON), 400, "invalid_request"),
    "empty list": (dict(data=b'{"texts": []}', headers=JSON), 400, "invalid_request"),
    "10 MB body": (
        dict(data=json.dumps({"texts": ["word " * 2_000_000]}).encode(), headers=JSON),
        413,
        "payload_too_large",
    ),
    "5,000 inputs": (
        dict(data=json.dumps({"texts": ["a"] * 5000}).encode(), headers=JSON),
        413,
        "too_many_inputs",
    ),
    "100,000 characters, truncate false": (
        dict(data=json.dumps({"texts": ["word " * 20_000], "truncate": False}).encode(), headers=JSON),
        422,
        "input_too_long",
    ),
    "invalid UTF-8": (dict(data=b'{"texts": ["caf\xe9 \xff"]}', headers=JSON), 400, "invalid_request"),
    "lone surrogate": (dict(data=b'{"texts": ["\\ud800"]}', headers=JSON), 400, "invalid_request"),
    "missing API key": (
        dict(data=b'{"texts": ["a"]}', headers={"Content-Type": "application/json"}),
        401,
        "unauthorized",
    ),
    "wrong API key": (
        dict(
            data=b'{"texts": ["a"]}',
            headers={"Content-Type": "application/json", "Authorization": "Bearer wrong"},
        ),
        401,
        "unauthorized",
    ),
    "not a bearer token": (
        dict(data=b'{"texts": ["a"]}', headers={"Content-Type": "application/json", "Authorization": KEY}),
        401,
        "unauthorized",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("path", ["/embed", "/v1/embeddings"])
def test_bad_input_gets_documented_status_and_json_error(server: str, case: str, path: str) -> None:
    kwargs, status, error_type = CASES[case]
    data = kwargs["data"]
    if path == "/v1/embeddings" and data.startswith(b'{"texts"'):
        # The OpenAI shape also takes a lone string, so "not a list" becomes "not a string".
        data = b'{"input": 5}' if case == "texts not a list" else b'{"input"' + data[len(b'{"texts"') :]
    response = requests.post(server + path, data=data, headers=kwargs["headers"], timeout=60)
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["error_type"] == error_type and body["error"]
    assert requests.get(server + "/health", timeout=10).status_code == 200


def test_server_still_embeds_after_all_bad_inputs(server: str) -> None:
    for kwargs, _, _ in CASES.values():
        requests.post(server + "/embed", timeout=60, **kwargs)
    response = requests.post(server + "/embed", json={"texts": ["still fine"]}, headers=AUTH, timeout=30)
    assert response.status_code == 200 and len(response.json()["embeddings"][0]) == 384


def test_open_endpoints_need_no_key_but_info_does(server: str) -> None:
    assert requests.get(server + "/health", timeout=10).status_code == 200
    assert requests.get(server + "/metrics", timeout=10).status_code == 200
    assert requests.get(server + "/info", timeout=10).status_code == 401
    assert requests.get(server + "/info", headers=AUTH, timeout=10).json()["max_input_tokens"] == 256


def test_unknown_path_and_method_are_json(server: str) -> None:
    missing = requests.get(server + "/nope", headers=AUTH, timeout=10)
    assert missing.status_code == 404 and missing.json()["error_type"] == "not_found"
    wrong_method = requests.get(server + "/embed", headers=AUTH, timeout=10)
    assert wrong_method.status_code == 405 and wrong_method.json()["error_type"] == "method_not_allowed"
