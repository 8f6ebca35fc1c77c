"""``GET /openapi.json`` stays true: every route is in it and real answers validate against it."""

from __future__ import annotations

import pytest
import schemathesis

KEY = "openapi-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}

# (method, path, request keywords): one real answer per documented status the app can give here.
EXCHANGES = [
    ("GET", "/health", {}),
    ("GET", "/info", {"headers": AUTH}),
    ("GET", "/info", {}),  # 401
    ("GET", "/metrics", {}),
    ("GET", "/openapi.json", {}),
    ("POST", "/embed", {"json": {"texts": ["one", "two"]}, "headers": AUTH}),
    ("POST", "/embed", {"json": {"texts": []}, "headers": AUTH}),  # 400
    ("POST", "/embed", {"json": {"texts": ["a"] * 9}, "headers": AUTH}),  # 413 too_many_inputs
    ("POST", "/embed", {"data": b"{}", "headers": {"Content-Type": "text/plain", **AUTH}}),  # 415
    ("POST", "/embed", {"json": {"texts": ["word " * 300], "truncate": False}, "headers": AUTH}),  # 422
    ("POST", "/v1/embeddings", {"json": {"input": "one", "dimensions": 8}, "headers": AUTH}),
    (
        "POST",
        "/v1/embeddings",
        {"json": {"input": [{"text": "a"}], "encoding_format": "base64"}, "headers": AUTH},
    ),
    ("POST", "/embeddings", {"json": {"input": ["a", "b"], "normalized": None}, "headers": AUTH}),
    ("POST", "/embeddings", {"json": {"input": ["a"], "dimensions": 385}, "headers": AUTH}),  # 400
]


def test_every_route_is_described_and_nothing_else(make_app) -> None:
    app = make_app()
    document = app.test_client().get("/openapi.json").json
    assert document["openapi"] == "3.1.0"
    routes = {
        (rule.rule, method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    described = {(path, method) for path, item in document["paths"].items() for method in item}
    assert described == routes


def test_limits_in_the_document_are_the_servers(make_app) -> None:
    document = make_app(max_inputs_per_request=8).test_client().get("/openapi.json").json
    schemas = document["components"]["schemas"]
    assert schemas["EmbedRequest"]["properties"]["texts"]["maxItems"] == 8
    dimensions = schemas["EmbeddingsRequest"]["properties"]["dimensions"]["anyOf"][0]
    assert (dimensions["minimum"], dimensions["maximum"]) == (1, 384)


def test_real_answers_are_documented_and_match_their_schema(make_app) -> None:
    client = make_app(max_inputs_per_request=8, api_key=KEY).test_client()
    document = client.get("/openapi.json").json
    assert document["security"] == [{"bearer": []}]
    schema = schemathesis.openapi.from_dict(document)
    statuses = set()
    for method, path, kwargs in EXCHANGES:
        response = client.open(path, method=method, **kwargs)
        documented = document["paths"][path][method.lower()]["responses"]
        assert str(response.status_code) in documented, (method, path, response.status_code)
        schema[path][method].validate_response(response)
        statuses.add(response.status_code)
    assert statuses == {200, 400, 401, 413, 415, 422}


def test_a_wrong_answer_fails_validation(make_app) -> None:
    """The check above can fail: an embedding answer without ``usage`` breaks the schema."""
    client = make_app().test_client()
    schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json)
    response = client.post("/embed", json={"texts": ["x"]})
    response.set_data(b'{"embeddings": [[0.5]], "model": "m"}')
    with pytest.raises(AssertionError, match='"usage" is a required property'):  # schemathesis' Failure
        schema["/embed"]["POST"].validate_response(response)
