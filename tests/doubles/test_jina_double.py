"""The Jina API double accepts what contracts.md allows and answers the API's errors otherwise."""

from __future__ import annotations

import pytest

from tests.doubles.common import Fault
from tests.doubles.jina_api import JinaDoubleConfig, create_app

KEY = "jina_double_key"
GOOD_HEADERS = {"Authorization": f"Bearer {KEY}", "Accept": "application/json"}


def client_for(**overrides):
    app = create_app(JinaDoubleConfig(dimensions=8, **overrides))
    return app.test_client(), app.extensions["ledger"]


def post(client, body, headers=GOOD_HEADERS):
    return client.post("/v1/embeddings", json=body, headers=headers)


def test_a_right_request_gets_ordered_embeddings_and_token_usage():
    client, ledger = client_for()
    response = post(client, {"model": "jina-embeddings-v3", "input": ["hello world", {"text": "a b c"}],
                             "task": "text-matching"})  # fmt: skip
    assert response.status_code == 200
    body = response.get_json()
    assert [item["index"] for item in body["data"]] == [0, 1]
    assert all(len(item["embedding"]) == 8 for item in body["data"])
    assert body["usage"] == {"total_tokens": 5, "prompt_tokens": 5}  # special tokens excluded
    assert response.headers["X-RateLimit-Remaining-Tokens"]
    assert ledger.as_dict()["violations"] == []


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        ({"Accept": "application/json"}, {"model": "jina-embeddings-v3", "input": ["x"]}, 401, "AUTH_MISSING_API_KEY"),
        ({**GOOD_HEADERS, "Authorization": "Token jina_x"}, {"model": "jina-embeddings-v3", "input": ["x"]}, 401,
         "AUTH_INVALID_FORMAT"),
        ({**GOOD_HEADERS, "Authorization": "Bearer jina_other"}, {"model": "jina-embeddings-v3", "input": ["x"]},
         401, "AUTH_INVALID_API_KEY"),
        (GOOD_HEADERS, {"model": "jina-embeddings-v9", "input": ["x"]}, 400, "INPUT_MODEL_NOT_FOUND"),
        (GOOD_HEADERS, {"model": "jina-embeddings-v3", "input": ["x"], "task": "search"}, 422, None),
        (GOOD_HEADERS, {"model": "jina-embeddings-v3", "input": ["x"], "dimensions": 4096}, 422, None),
        (GOOD_HEADERS, {"model": "jina-embeddings-v3", "input": ["x"], "encoding_format": "float"}, 422, None),
        (GOOD_HEADERS, {"model": "jina-embeddings-v3", "input": []}, 422, None),
        (GOOD_HEADERS, {"model": "jina-embeddings-v3", "input": [1, 2]}, 422, None),
        (GOOD_HEADERS, {"input": ["x"]}, 422, None),
        ({"Authorization": f"Bearer {KEY}", "Accept": "text/html"}, {"model": "jina-embeddings-v3", "input": ["x"]},
         422, None),
    ],
)  # fmt: skip
def test_wrong_requests_get_the_apis_errors_and_are_recorded(headers, body, status, code):
    client, ledger = client_for()
    response = post(client, body, headers)
    assert response.status_code == status
    assert response.get_json().get("code") == code
    assert "request_id" in response.get_json()
    assert len(ledger.as_dict()["violations"]) == 1


def test_more_than_2048_inputs_gets_the_documented_message():
    client, _ = client_for()
    response = post(client, {"model": "jina-embeddings-v3", "input": ["x"] * 2049})
    assert response.status_code == 400
    assert response.get_json()["detail"] == '"input" length 2049 is larger than the largest allowed size 2048'


def test_inputs_over_8192_tokens_need_truncate():
    client, ledger = client_for()
    long_text = "hello " * 8193
    assert post(client, {"model": "jina-embeddings-v3", "input": [long_text]}).status_code == 422
    allowed = post(client, {"model": "jina-embeddings-v3", "input": [long_text], "truncate": True})
    assert allowed.status_code == 200
    assert len(ledger.as_dict()["violations"]) == 1


def test_content_type_must_be_json():
    client, _ = client_for()
    response = client.post(
        "/v1/embeddings", data="{}", headers={**GOOD_HEADERS, "Content-Type": "text/plain"}
    )
    assert response.status_code == 422


def test_faults_follow_their_schedule_with_the_documented_codes():
    client, ledger = client_for(faults=(Fault("rate_tokens", 2), Fault("short", 3)), retry_after=0.5)
    body = {"model": "jina-embeddings-v3", "input": ["a", "b"]}
    statuses = [post(client, body) for _ in range(6)]
    assert [r.status_code for r in statuses] == [200, 429, 200, 429, 200, 429]
    assert statuses[1].get_json()["code"] == "RATE_TOKEN_LIMIT_EXCEEDED"
    assert statuses[1].headers["Retry-After"] == "0.5"
    assert len(statuses[2].get_json()["data"]) == 1  # request 3: one embedding missing
    assert ledger.as_dict()["faults"] == {"rate_tokens": 3, "short": 1}


def test_unknown_paths_are_404_and_recorded():
    client, ledger = client_for()
    assert client.post("/v1/embed", json={}).status_code == 404
    assert ledger.as_dict()["violations"] == ["404 POST /v1/embed"]
