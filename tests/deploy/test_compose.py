"""docker-compose.yml: every command, flag, path, port, volume, variable and healthcheck is real and agrees.

Commands are checked the way a container would run them: the image's ENTRYPOINT / CMD from its
Dockerfile, the service's ``command``, compose's interpolation, and Locust's own parser reading the
result together with the env files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from target_server.config import ENV_PREFIX, resolve_config
from tests.deploy.files import (
    COMPOSE_FILE,
    DOCKERFILES,
    IMAGES,
    REPO,
    as_list,
    compose,
    container_argv,
    dockerfile,
    env_file_entries,
    read_env_file,
    service_environment,
    url_host,
    url_port,
)
from tests.deploy.programs import (
    Invocation,
    aws_setting_env_vars,
    credential_env_vars,
    invocation,
    locust_container_env_vars,
    parse_locust,
    target_env_vars,
    unknown_flags,
)
from tests.deploy.scripts import docker_script

SHELLS = [{}, {"WORKERS": "7", "RUN_NAME": "jina-article"}]  # compose's defaults, and a user's choice
EXAMPLE_DIR = REPO / "docker"


def services(shell: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """The services `docker compose up` starts: those of an optional profile (observability) are
    checked in test_observability.py."""
    return {name: s for name, s in compose(shell)["services"].items() if not s.get("profiles")}


def image_of(service: dict[str, Any]):
    return dockerfile(IMAGES[service["image"]])


def call_of(service: dict[str, Any]) -> Invocation:
    image = image_of(service)
    argv = container_argv(as_list(service.get("entrypoint")), as_list(service.get("command")), image)
    return invocation(argv, image)


def healthcheck_call(service: dict[str, Any]) -> Invocation:
    test = as_list(service["healthcheck"]["test"])
    assert test[0] == "CMD", "use the exec form: the image may have no shell utilities"
    return invocation(test[1:], image_of(service))


def container_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for port in service.get("ports", []):
        target = port["target"] if isinstance(port, dict) else str(port).split(":")[-1].split("/")[0]
        ports.add(int(target))
    return ports


def locust_env(service: dict[str, Any], *, example: bool = False) -> dict[str, str]:
    """What a Locust container's environment holds: its env files in order, then ``environment``
    (compose's precedence), then what the entrypoint adds."""
    env: dict[str, str] = {}
    for path, _required in env_file_entries(service):
        if path.exists():
            env |= read_env_file(path)
        elif example:
            env |= read_env_file(EXAMPLE_DIR / f"{path.name}.example")
    env |= service_environment(service)
    return docker_script("locust_entrypoint").locust_environment(env)


def locust_services(shell: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services(shell).items() if IMAGES[s["image"]] == "locust"}


def test_three_services_built_from_the_two_dockerfiles() -> None:
    found = services()
    assert set(found) == {"target", "master", "worker"}
    for name, service in found.items():
        context = COMPOSE_FILE.parent / service["build"]["context"]
        assert context.resolve() == REPO, f"{name}: the build context must be the repository"
        dockerfile_path = context / service["build"]["dockerfile"]
        assert dockerfile_path.resolve() == DOCKERFILES[IMAGES[service["image"]]], name


@pytest.mark.parametrize("name", ["target", "master", "worker"])
def test_commands_and_healthchecks_use_real_programs_and_flags(name: str, spawn: None) -> None:
    service = services()[name]
    calls = [call_of(service)]
    if "healthcheck" in service:
        calls.append(healthcheck_call(service))
    for call in calls:
        assert unknown_flags(call) == [], f"{name}: {call.program} has no {unknown_flags(call)}"


def test_env_files_exist_or_have_an_example() -> None:
    for name, service in services().items():
        for path, required in env_file_entries(service):
            if required:
                assert path.is_file(), f"{name}: required env file {path} is missing"
            else:
                example = EXAMPLE_DIR / f"{path.name}.example"
                assert example.is_file(), f"{name}: optional {path.name} has no {example}"


def test_target_listens_where_it_is_checked_published_and_addressed() -> None:
    target = services()["target"]
    port = int(call_of(target).value("--port"))
    assert call_of(target).value("--host") == "0.0.0.0"
    assert container_ports(target) == {port}
    (url,) = healthcheck_call(target).args
    assert (url_host(url), url_port(url)) == ("127.0.0.1", port)
    for name, service in locust_services().items():
        url = service_environment(service)["EMBED_BENCH_TARGET_URL"]
        assert (url_host(url), url_port(url)) == ("target", port), name


def test_target_has_a_gpu_and_the_master_waits_for_its_health() -> None:
    found = services()
    target = found["target"]
    devices = target["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and d["count"] == 1 and "gpu" in d["capabilities"] for d in devices)
    assert target["healthcheck"]["start_period"]  # the model loads (or downloads) before /health is 200
    assert found["master"]["depends_on"]["target"]["condition"] == "service_healthy"
    assert "master" in found["worker"]["depends_on"]


@pytest.mark.parametrize("shell", SHELLS, ids=["defaults", "workers-7"])
def test_master_and_workers_agree(shell: dict[str, str], spawn: None) -> None:
    found = services(shell)
    master, worker = found["master"], found["worker"]
    master_options = parse_locust(call_of(master).args, locust_env(master))
    worker_options = parse_locust(call_of(worker).args, locust_env(worker))
    assert master_options["master"] and not master_options["worker"]
    assert worker_options["worker"] and not worker_options["master"]
    # Workers find the master by its service name and port.
    assert worker_options["master_host"] == "master"
    assert worker_options["master_port"] == master_options["master_bind_port"]
    assert {master_options["master_bind_port"], master_options["web_port"]} <= image_of(
        master
    ).exposed_ports()
    assert container_ports(master) == {master_options["web_port"]}
    # The master waits for as many workers as compose starts.
    replicas = int(worker["deploy"]["replicas"])
    assert replicas == int(shell.get("WORKERS", "2")) == master_options["expect_workers"]
    # Grid from the environment, started without a click, on the same backend everywhere.
    assert master_options["grid"] == "quick" and master_options["autostart"] is True
    assert master_options["user_classes"] == worker_options["user_classes"] == ["SelfHostedUser"]
    assert master_options["host"] == "http://target:8000"


@pytest.mark.parametrize("shell", SHELLS, ids=["defaults", "named-run"])
def test_run_directory_is_on_the_masters_volume(shell: dict[str, str], spawn: None) -> None:
    document = compose(shell)
    master = document["services"]["master"]
    options = parse_locust(call_of(master).args, locust_env(master))
    run_dir = PurePosixPath(options["run_dir"])
    assert PurePosixPath(options["csv_prefix"]).parent == run_dir  # cells.csv beside locust_stats.csv
    assert options["stats_history_enabled"]  # --csv-full-history: the report's throughput over time
    assert run_dir.name == shell.get("RUN_NAME", "swarm")
    mounts = [volume.split(":") for volume in master["volumes"]]
    on_volume = [(source, target) for source, target, *_ in mounts if run_dir.is_relative_to(target)]
    assert on_volume, f"{run_dir} is not on a volume of the master"
    (source, _target), *_ = on_volume
    assert source in document["volumes"], f"{source} is not a named volume"


def test_every_variable_is_one_the_containers_read(spawn: None) -> None:
    locust_names = locust_container_env_vars() | aws_setting_env_vars()
    for name, service in services().items():
        names = set(service_environment(service))
        for path, _required in env_file_entries(service):
            path = path if path.exists() else EXAMPLE_DIR / f"{path.name}.example"
            names |= set(read_env_file(path, commented=True))
        known = target_env_vars() if name == "target" else locust_names
        assert names - known == set(), f"{name}: no program reads {sorted(names - known)}"


def test_example_settings_parse_with_locust(spawn: None) -> None:
    """Every setting in swarm.env.example (commented ones too) is a value Locust accepts."""
    example = read_env_file(EXAMPLE_DIR / "swarm.env.example", commented=True)
    settings = {key: value for key, value in example.items() if key.startswith("LOCUST_")}
    assert {"LOCUST_GRID", "LOCUST_HOST", "LOCUST_SAGEMAKER_ENDPOINT", "LOCUST_AWS_REGION"} <= set(settings)
    options = parse_locust([], settings)
    assert options["sagemaker_endpoint"] == settings["LOCUST_SAGEMAKER_ENDPOINT"]
    assert options["autoquit"] == int(settings["LOCUST_AUTOQUIT"])


def test_target_settings_are_valid_server_settings(monkeypatch) -> None:
    for name in [name for name in os.environ if name.startswith(ENV_PREFIX + "_")]:
        monkeypatch.delenv(name)
    environment = service_environment(services()["target"])
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    _, config = resolve_config()
    assert (config.model, config.batching, config.trust_remote_code) == ("bundled", "continuous", False)
    monkeypatch.setenv("EMBED_BENCH_BATCHING", "dynamic")  # the check can fail
    with pytest.raises(ValueError, match="batching"):
        resolve_config()


def test_secrets_come_only_from_the_users_env_file() -> None:
    secrets = credential_env_vars()
    for name, service in services().items():
        assert secrets.isdisjoint(service_environment(service)), f"{name} sets a secret in the compose file"
        for path, required in env_file_entries(service):
            if required:  # files in the tree
                assert secrets.isdisjoint(read_env_file(path, commented=True)), f"{path} holds a secret"
    example = read_env_file(EXAMPLE_DIR / "swarm.env.example", commented=True)
    placeholders = {key: value for key, value in example.items() if key in secrets}
    assert placeholders, "the example shows no secret to set"
    for key, value in placeholders.items():
        assert set(value.split("_")[-1].removeprefix("AKIA")) <= {"x", "X"}, f"{key} is not a placeholder"


def _compose_command() -> list[str] | str:
    """``docker compose`` or ``docker-compose`` if one works here, else why not."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
        reason = f"`docker compose version` failed: {(probe.stderr or probe.stdout).strip()[:200]}"
    else:
        reason = "no docker client"
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return reason + "; no docker-compose binary either"


def test_docker_compose_accepts_the_file(tmp_path: Path, spawn: None) -> None:
    command = _compose_command()
    if isinstance(command, str):
        pytest.skip(f"no docker compose here: {command}")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=REPO,
        env={**os.environ, "WORKERS": "3"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def published(service: dict[str, Any]) -> dict[int, str]:
    """Container port -> the host address compose publishes it on ("" when on every interface)."""
    found = {}
    for port in service.get("ports", []):
        assert isinstance(port, str), "ports in the short form, HOST_IP:HOST_PORT:CONTAINER_PORT"
        parts = port.rsplit(":", 2)
        found[int(parts[-1].split("/")[0])] = parts[0] if len(parts) == 3 else ""
    return found


@pytest.mark.parametrize(
    ("shell", "address"),
    [
        ({}, "127.0.0.1"),
        ({"EMBED_BENCH_BIND": ""}, "127.0.0.1"),
        ({"EMBED_BENCH_BIND": "0.0.0.0"}, "0.0.0.0"),
    ],
    ids=["default", "empty", "exposed"],
)
def test_the_web_ui_and_the_target_are_published_on_loopback_unless_told(shell, address) -> None:
    found = services(shell)
    assert published(found["target"]) == {8000: address}
    assert published(found["master"]) == {8089: address}
    assert published(found["worker"]) == {}  # workers only dial out
    # The master knows where it is published: beyond loopback, its entrypoint requires the login.
    assert service_environment(found["master"])["EMBED_BENCH_BIND"] == address
    assert service_environment(found["master"])["EMBED_BENCH_TARGET_URL"] == "http://target:8000"


def test_an_exposed_master_runs_locust_with_its_login(spawn: None) -> None:
    found = services({"EMBED_BENCH_BIND": "0.0.0.0"})
    master = found["master"]
    with pytest.raises(ValueError, match="EMBED_BENCH_WEB_PASSWORD"):
        locust_env(master)
    service = {**master, "environment": {**master["environment"], "EMBED_BENCH_WEB_PASSWORD": "pw"}}
    options = parse_locust(call_of(master).args, locust_env(service))
    assert options["web_login"] is True
    default = services()["master"]
    assert parse_locust(call_of(default).args, locust_env(default))["web_login"] is False
