"""Where a credential may go: hosts compared by origin, the scope of an API key, AWS's own hosts."""

from __future__ import annotations

import pytest

from embed_bench.core.credentials import (
    HostScope,
    api_key_scope,
    aws_allows,
    describe,
    is_sagemaker_runtime,
    origin,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.jina.ai", ("https", "api.jina.ai", 443)),
        ("https://API.jina.ai:443/v1/", ("https", "api.jina.ai", 443)),
        ("http://127.0.0.1:8000", ("http", "127.0.0.1", 8000)),
        ("http://[::1]:8000/x", ("http", "::1", 8000)),
        ("https://api.jina.ai.", ("https", "api.jina.ai", 443)),
        ("ftp://api.jina.ai", None),
        ("api.jina.ai", None),
        ("http://host:notaport", None),
        ("", None),
        (None, None),
    ],
)
def test_origin_is_scheme_host_and_port(url, expected):
    assert origin(url) == expected


def test_a_key_goes_only_to_the_start_host_the_backends_own_and_the_runs_key_host():
    scope = api_key_scope("http://127.0.0.1:8000", "https://api.jina.ai", None)
    assert scope.allows("http://127.0.0.1:8000/") and scope.allows("https://api.jina.ai:443")
    for stranger in (
        "http://127.0.0.1:8001",  # another port
        "https://127.0.0.1:8000",  # another scheme
        "http://localhost:8000",  # another name
        "https://api.jina.ai.evil.example",
        "https://evil.example/?https://api.jina.ai",
        "http://api.jina.ai",
        None,
        "",
    ):
        assert not scope.allows(stranger), stranger
    assert api_key_scope(None, None, "http://10.0.0.9:9000").allows("http://10.0.0.9:9000")
    assert HostScope.of((None, "")).names() == []
    assert scope.names() == ["http://127.0.0.1:8000", "https://api.jina.ai"]


def test_aws_credentials_go_only_to_aws_runtime_or_the_start_host():
    assert is_sagemaker_runtime("https://runtime.sagemaker.us-east-1.amazonaws.com")
    assert is_sagemaker_runtime("https://runtime.sagemaker.cn-north-1.amazonaws.com.cn/endpoints/x")
    assert not is_sagemaker_runtime("http://runtime.sagemaker.us-east-1.amazonaws.com")  # not https
    assert not is_sagemaker_runtime("https://runtime.sagemaker.us-east-1.amazonaws.com.evil.example")
    assert aws_allows("https://runtime.sagemaker.eu-west-1.amazonaws.com/endpoints/e/invocations", None)
    assert aws_allows("http://127.0.0.1:9001/endpoints/e/invocations", "http://127.0.0.1:9001")
    assert not aws_allows("http://127.0.0.1:9002/endpoints/e/invocations", "http://127.0.0.1:9001")
    assert not aws_allows("http://127.0.0.1:9002", None)


def test_describe_names_a_host_as_the_form_shows_it():
    assert describe("https://api.jina.ai:443/v1") == "https://api.jina.ai"
    assert describe("http://[::1]:8000") == "http://[::1]:8000"
    assert describe("nonsense") == "(none)"
