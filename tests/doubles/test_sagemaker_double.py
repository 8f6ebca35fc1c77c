"""The SageMaker double verifies SigV4 with botocore's signer and answers the runtime's errors."""

from __future__ import annotations

import hashlib
import json

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from requests_aws4auth import AWS4Auth

from tests.doubles.common import Fault
from tests.doubles.sagemaker import BODY_LIMIT_BYTES, SageMakerDoubleConfig, create_app

ACCESS, SECRET = "AKIDDOUBLEEXAMPLE", "double-secret-key"
BASE = "http://localhost:8443"  # a non-default port, as for any local double
PATH = "/endpoints/jina-v3/invocations"
BODY = {"data": [{"text": "hello world"}, {"text": "a b c"}], "parameters": {"task": "text-matching",
                                                                             "dimensions": None,
                                                                             "late_chunking": False}}  # fmt: skip


def client_for(**overrides):
    app = create_app(SageMakerDoubleConfig(dimensions=8, **overrides))
    return app.test_client(), app.extensions["ledger"]


def signed_headers(body: bytes, *, service="sagemaker", secret=SECRET, host="localhost:8443", path=PATH):
    """Sign like SageMakerUser: requests-aws4auth over a prepared request with an explicit Host."""
    prepared = requests.Request(
        "POST",
        f"{BASE}{path}",
        data=body,
        headers={"Content-Type": "application/json", "Accept": "application/json", "Host": host},
    ).prepare()
    AWS4Auth(ACCESS, secret, "us-east-1", service)(prepared)
    return dict(prepared.headers)


def invoke(client, body: bytes, headers, path=PATH):
    return client.post(path, data=body, headers=headers, base_url=BASE)


def test_a_signed_request_gets_the_containers_response_with_per_item_usage():
    client, ledger = client_for()
    body = json.dumps(BODY).encode()
    response = invoke(client, body, signed_headers(body))
    assert response.status_code == 200, response.get_json()
    payload = response.get_json()
    assert "usage" not in payload
    assert [item["usage"]["total_tokens"] for item in payload["data"]] == [2, 3]
    assert all(len(item["id"]) == 32 and item["usage"]["id"] == item["id"] for item in payload["data"])
    assert payload["parameters"]["dimensions"] == 8.0
    assert ledger.as_dict()["violations"] == []


def test_botocores_own_signer_is_accepted_too():
    client, _ = client_for()
    body = json.dumps(BODY).encode()
    request = AWSRequest("POST", f"{BASE}{PATH}", data=body, headers={"Content-Type": "application/json"})
    request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    SigV4Auth(Credentials(ACCESS, SECRET), "sagemaker", "us-east-1").add_auth(request)
    assert invoke(client, body, dict(request.headers.items())).status_code == 200


@pytest.mark.parametrize(
    ("change", "error_type"),
    [
        ({"service": "sagemaker-runtime"}, "InvalidSignatureException"),
        ({"secret": "wrong-secret"}, "InvalidSignatureException"),
        (
            {"host": "localhost"},
            "InvalidSignatureException",
        ),  # requests-aws4auth#79: host signed without port
    ],
)
def test_bad_signatures_are_rejected(change, error_type):
    client, ledger = client_for()
    body = json.dumps(BODY).encode()
    headers = signed_headers(body, **change)
    headers["Host"] = "localhost:8443"
    response = invoke(client, body, headers)
    assert response.status_code == 403
    assert response.headers["x-amzn-ErrorType"].split(":")[0] == error_type
    assert len(ledger.as_dict()["violations"]) == 1


def test_a_tampered_body_or_no_signature_is_rejected():
    client, _ = client_for()
    body = json.dumps(BODY).encode()
    headers = signed_headers(body)
    tampered = body.replace(b"hello", b"jello")
    assert invoke(client, tampered, headers).status_code in (400, 403)
    response = invoke(client, body, {"Content-Type": "application/json"})
    assert response.headers["x-amzn-ErrorType"].startswith("MissingAuthenticationTokenException")


def test_unknown_endpoint_oversize_body_and_container_shape():
    client, _ = client_for()
    body = json.dumps(BODY).encode()
    response = invoke(client, body, signed_headers(body, path="/endpoints/other/invocations"),
                      path="/endpoints/other/invocations")  # fmt: skip
    assert response.status_code == 400
    assert response.get_json() == {"message": "Endpoint other of account 123456789012 not found."}
    big = json.dumps({"data": [{"text": "x" * (BODY_LIMIT_BYTES + 1)}]}).encode()
    assert invoke(client, big, signed_headers(big)).headers["x-amzn-ErrorType"].startswith("ValidationError")
    jina_api_shape = json.dumps({"model": "jina-embeddings-v3", "input": ["x"]}).encode()
    response = invoke(client, jina_api_shape, signed_headers(jina_api_shape))
    assert response.status_code == 424
    assert response.get_json()["OriginalStatusCode"] == 400


@pytest.mark.parametrize(
    ("fault", "status", "error_type", "field"),
    [
        ("model_error", 424, "ModelError", "OriginalStatusCode"),
        ("container_timeout", 424, "ModelError", "Message"),
        ("throttling", 400, "ThrottlingException", "message"),
        ("not_ready", 429, "ModelNotReadyException", "message"),
        ("internal", 500, "InternalFailure", "message"),
        ("unavailable", 503, "ServiceUnavailable", "message"),
    ],
)
def test_injected_faults_look_like_the_runtimes(fault, status, error_type, field):
    client, ledger = client_for(faults=(Fault(fault, 1),))
    body = json.dumps(BODY).encode()
    response = invoke(client, body, signed_headers(body))
    assert response.status_code == status
    assert response.headers["x-amzn-ErrorType"].split(":")[0] == error_type
    assert field in response.get_json()
    if fault == "throttling":
        assert response.get_json() == {"message": None}
    assert ledger.as_dict()["faults"] == {fault: 1}
    assert ledger.as_dict()["violations"] == []
