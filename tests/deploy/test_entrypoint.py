"""docker/locust_entrypoint.py: a backend name becomes the locustfile, user class and host Locust runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from embed_bench.core.backends import BACKENDS
from tests.deploy.files import REPO
from tests.deploy.scripts import docker_script

TARGET = "http://target:8000"


@pytest.fixture(scope="module")
def entrypoint():
    return docker_script("locust_entrypoint")


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_each_backend_picks_its_locustfile_class_and_host(entrypoint, name: str) -> None:
    env = entrypoint.locust_environment({"EMBED_BENCH_BACKEND": name, "EMBED_BENCH_TARGET_URL": TARGET})
    backend = BACKENDS[name]
    assert env["LOCUST_LOCUSTFILE"] == str(backend.locustfile) and backend.locustfile.is_file()
    assert env["LOCUST_USER_CLASSES"] == backend.user_class
    expected_host = {"self-hosted": TARGET, "openai": TARGET, "jina": "https://api.jina.ai"}.get(name)
    assert env.get("LOCUST_HOST") == expected_host  # SageMaker: none, the user class derives it


def test_defaults_and_explicit_settings(entrypoint) -> None:
    env = entrypoint.locust_environment({"EMBED_BENCH_TARGET_URL": TARGET})
    assert env["LOCUST_USER_CLASSES"] == "SelfHostedUser" and env["LOCUST_HOST"] == TARGET
    explicit = {
        "EMBED_BENCH_BACKEND": "jina",
        "LOCUST_HOST": "http://127.0.0.1:9",
        "LOCUST_LOCUSTFILE": "locustfiles/jina_api.py,tests/deploy/count_plugin.py",
    }
    env = entrypoint.locust_environment(explicit)
    assert {key: env[key] for key in explicit} == explicit
    env = entrypoint.locust_environment({"EMBED_BENCH_BACKEND": "sagemaker", "LOCUST_HOST": " "})
    assert "LOCUST_HOST" not in env  # an empty --host would hide the region's runtime URL


def test_unknown_backend_names_the_choices(entrypoint, spawn: None) -> None:
    with pytest.raises(
        entrypoint.EntrypointError, match="choose one of self-hosted, jina, openai, sagemaker"
    ):
        entrypoint.locust_environment({"EMBED_BENCH_BACKEND": "jina-api"})
    result = subprocess.run(
        [sys.executable, "docker/locust_entrypoint.py", "--version"],
        cwd=REPO,
        env={"EMBED_BENCH_BACKEND": "tei", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "EMBED_BENCH_BACKEND='tei' is not a backend" in result.stderr


def test_options_go_to_locust_and_programs_run_as_given(entrypoint) -> None:
    assert entrypoint.command(["--master", "--web-port", "8089"]) == [
        sys.executable,
        "-m",
        "locust",
        "--master",
        "--web-port",
        "8089",
    ]
    assert entrypoint.command(["bash", "-l"]) == ["bash", "-l"]
    assert entrypoint.command([])[1:] == ["-m", "locust"]


@pytest.mark.usefixtures("spawn")
@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_locust_loads_what_the_entrypoint_picks(name: str) -> None:
    """The real exec: Locust imports the backend's locustfile and lists its user class."""
    result = subprocess.run(
        [sys.executable, "docker/locust_entrypoint.py", "--list"],
        cwd=REPO,
        env={"EMBED_BENCH_BACKEND": name, "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert BACKENDS[name].user_class in result.stdout.split()


def test_a_sagemaker_region_in_the_environment_gives_the_runtime_host(entrypoint) -> None:
    env = entrypoint.locust_environment(
        {"EMBED_BENCH_BACKEND": "sagemaker", "LOCUST_AWS_REGION": "eu-central-1"}
    )
    assert env["LOCUST_HOST"] == "https://runtime.sagemaker.eu-central-1.amazonaws.com"


def test_a_web_ui_published_beyond_loopback_gets_a_login_or_does_not_start(entrypoint) -> None:
    base = {"EMBED_BENCH_TARGET_URL": TARGET}
    for loopback in ("", "127.0.0.1", "127.0.0.2", "::1", "localhost"):
        env = entrypoint.locust_environment(base | {"EMBED_BENCH_BIND": loopback})
        assert "LOCUST_WEB_LOGIN" not in env, loopback
    for exposed in ("0.0.0.0", "192.168.1.20", "::", "*"):
        with pytest.raises(entrypoint.EntrypointError, match="set EMBED_BENCH_WEB_PASSWORD"):
            entrypoint.locust_environment(base | {"EMBED_BENCH_BIND": exposed})
        env = entrypoint.locust_environment(
            base | {"EMBED_BENCH_BIND": exposed, "EMBED_BENCH_WEB_PASSWORD": "s3cret"}
        )
        assert env["LOCUST_WEB_LOGIN"] == "true", exposed
