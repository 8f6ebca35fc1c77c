"""The backend registry carries behaviour: credentials, host, model, readiness."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from embed_bench.commands import run
from embed_bench.core.backends import BACKENDS, BackendError, Settings, sagemaker_runtime_url
from tests.support.json_server import json_server

NO_AWS = {"AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}


@pytest.fixture
def clean_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", "LOCUST_AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in NO_AWS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDLOCAL")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")


def test_settings_prefer_the_command_line_to_the_environment() -> None:
    settings = Settings(("--aws-region", "eu-west-1", "--model=m1"), {"LOCUST_AWS_REGION": "us-east-1"})
    assert settings.get("--aws-region") == "eu-west-1" and settings.get("--model") == "m1"
    assert Settings((), {"LOCUST_AWS_REGION": " us-east-1 "}).get("--aws-region") == "us-east-1"
    assert Settings((), {"LOCUST_AWS_REGION": " "}).get("--aws-region") is None
    assert Settings((), {"JINA_API_KEY": "k"}).api_key() == "k"
    assert Settings((), {"LOCUST_API_KEY": "a", "JINA_API_KEY": "b"}).api_key() == "a"


def test_a_region_given_only_as_locust_aws_region_derives_the_host(
    clean_aws, monkeypatch, spawn: None
) -> None:
    """The bug found by reading: this used to give https://runtime.sagemaker.None.amazonaws.com."""
    monkeypatch.setenv("LOCUST_AWS_REGION", "eu-central-1")
    args = run.build_parser().parse_args(["--backend", "sagemaker", "--out", "/nonexistent/run"])
    plan = run.plan_run(args, ["--sagemaker-endpoint", "jina-v3"])
    assert plan.host == "https://runtime.sagemaker.eu-central-1.amazonaws.com"
    assert "None" not in plan.host


def test_sagemaker_needs_endpoint_credentials_and_region(clean_aws, monkeypatch) -> None:
    sagemaker = BACKENDS["sagemaker"]
    with pytest.raises(BackendError, match="--sagemaker-endpoint"):
        sagemaker.check_credentials(Settings((), {}))
    with pytest.raises(BackendError, match="no AWS region"):
        sagemaker.check_credentials(Settings(("--sagemaker-endpoint", "e"), {}))
    sagemaker.check_credentials(Settings(("--sagemaker-endpoint", "e", "--aws-region", "us-east-1"), {}))
    assert sagemaker.host(Settings(("--aws-region", "us-east-1"), {})) == sagemaker_runtime_url("us-east-1")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(BackendError, match="no AWS credentials"):
        sagemaker.check_credentials(Settings(("--sagemaker-endpoint", "e", "--aws-region", "us-east-1"), {}))


def test_an_unknown_aws_profile_is_one_line(clean_aws, monkeypatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nonesuch")
    with pytest.raises(BackendError) as caught:
        BACKENDS["sagemaker"].check_credentials(Settings(("--sagemaker-endpoint", "e"), {}))
    assert "nonesuch" in str(caught.value) and "\n" not in str(caught.value)


def test_the_jina_api_needs_a_key_and_has_a_host() -> None:
    jina = BACKENDS["jina"]
    with pytest.raises(BackendError, match="JINA_API_KEY"):
        jina.check_credentials(Settings((), {}))
    jina.check_credentials(Settings((), {"JINA_API_KEY": "jina_x"}))
    assert jina.host(Settings((), {})) == "https://api.jina.ai"
    assert jina.model(Settings((), {}), "https://api.jina.ai") == "jina-embeddings-v3"


def test_only_the_self_hosted_backend_has_a_health_check_and_hosts_are_given_for_local_ones() -> None:
    assert {name for name, b in BACKENDS.items() if b.health_path} == {"self-hosted"}
    assert {name for name, b in BACKENDS.items() if b.talks_to_bundled_target} == {"self-hosted", "openai"}
    for name in ("self-hosted", "openai"):
        assert BACKENDS[name].host(Settings((), {})) is None


@pytest.fixture
def model_server() -> Iterator[tuple[str, dict[str, object]]]:
    documents: dict[str, object] = {}
    with json_server(lambda path: (200, documents[path]) if path in documents else None) as url:
        yield url, documents


def test_an_openai_compatible_server_names_its_model(model_server, spawn: None) -> None:
    host, documents = model_server
    openai = BACKENDS["openai"]
    assert openai.model(Settings(("--model", "given"), {}), host) == "given"
    with pytest.raises(BackendError, match="pass --model NAME") as refused:
        openai.model(Settings((), {}), host)
    for tried in ("GET /v1/models: HTTP 404", "GET /models: HTTP 404", "GET /info: HTTP 404"):
        assert tried in str(refused.value)
    documents["/info"] = {"model": "from-info"}
    assert openai.model(Settings((), {}), host) == "from-info"
    documents["/models"] = {"object": "list", "data": [{"id": "minilm", "object": "model"}]}  # Infinity
    assert openai.model(Settings((), {}), host) == "minilm"
    documents["/v1/models"] = {
        "object": "list",
        "data": [{"id": "BAAI/bge-small-en-v1.5", "object": "model"}],
    }
    assert openai.model(Settings((), {}), host) == "BAAI/bge-small-en-v1.5"
    assert BACKENDS["self-hosted"].model(Settings((), {}), host) == "from-info"


def test_hosted_apis_record_hosted_hardware_and_a_server_its_own(spawn: None) -> None:
    settings = Settings((), {})
    assert BACKENDS["jina"].hardware(settings, "https://api.jina.ai") == "hosted"
    assert BACKENDS["sagemaker"].hardware(settings, sagemaker_runtime_url("us-east-1")) == "hosted"
    described = {
        "device": "cuda",
        "gpu": "NVIDIA H200",
        "gpus": 1,
        "cpu": "x",
        "cpus": 16,
        "torch_threads": 16,
    }
    with json_server(lambda path: (200, {"hardware": described}) if path == "/info" else (404, {})) as url:
        for name in ("self-hosted", "openai", "jina"):  # jina's user pointed at a server of one's own
            assert BACKENDS[name].hardware(settings, url) == described
    with json_server(lambda path: (404, {})) as url:  # a server that does not say: unknown, not guessed
        assert BACKENDS["openai"].hardware(settings, url) is None
