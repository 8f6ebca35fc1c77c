"""deploy/k8s: the manifests parse, build with kustomize, and agree with the images, the CLIs and each other."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml

from target_server.config import ENV_PREFIX, resolve_config
from tests.deploy.files import (
    IMAGES,
    K8S_DIR,
    container_argv,
    container_port,
    dockerfile,
    k8s_documents,
    k8s_expand,
    k8s_object,
    k8s_references,
    kustomization,
    pod_containers,
    read_env_file,
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

NAMESPACE = "embed-bench"
DEPLOYMENTS = ("embed-bench-target", "embed-bench-master", "embed-bench-worker")


def deployment(name: str) -> dict[str, Any]:
    return k8s_object("Deployment", name)


def container(name: str) -> dict[str, Any]:
    (found,) = pod_containers(deployment(name))
    return found


def config_map(name: str) -> dict[str, str]:
    return {key: str(value) for key, value in k8s_object("ConfigMap", name)["data"].items()}


def container_env(spec: dict[str, Any]) -> dict[str, str]:
    """The container's variables that come from ConfigMaps in the manifests (secrets stay out)."""
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        if "configMapRef" in source:
            env |= config_map(source["configMapRef"]["name"])
    for variable in spec.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        elif "configMapKeyRef" in variable.get("valueFrom", {}):
            ref = variable["valueFrom"]["configMapKeyRef"]
            env[variable["name"]] = config_map(ref["name"])[ref["key"]]
    return env


def call_of(name: str) -> Invocation:
    spec = container(name)
    image = dockerfile(IMAGES[spec["image"]])
    env = container_env(spec)
    args = [k8s_expand(arg, env) for arg in spec.get("args", [])]
    command = [k8s_expand(arg, env) for arg in spec.get("command", [])]
    return invocation(container_argv(command, args, image), image)


def locust_options(name: str) -> dict[str, Any]:
    env = docker_script("locust_entrypoint").locust_environment(container_env(container(name)))
    return parse_locust(call_of(name).args, env)


def service_port(service: str, port_name: str) -> tuple[int, int]:
    """(port, containerPort) of a named Service port, through the Deployment its selector picks."""
    spec = k8s_object("Service", service)["spec"]
    (port,) = [p for p in spec["ports"] if p["name"] == port_name]
    (picked,) = [d for d in DEPLOYMENTS if _selects(spec["selector"], deployment(d))]
    return port["port"], container_port(container(picked), port["targetPort"])


def _selects(selector: dict[str, str], target: dict[str, Any]) -> bool:
    labels = target["spec"]["template"]["metadata"]["labels"]
    return selector.items() <= labels.items()


def test_kustomization_lists_every_manifest_and_each_object_is_complete() -> None:
    listed = set(kustomization()["resources"])
    on_disk = {path.name for path in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    kinds = set()
    for document in k8s_documents():
        assert document["apiVersion"] and document["metadata"]["name"], document
        kinds.add(document["kind"])
    assert {"Deployment", "Service", "ConfigMap", "PersistentVolumeClaim", "Namespace"} <= kinds
    assert "Secret" not in kinds  # created from the user's file, never kept in the tree
    for document in k8s_documents():
        if document["kind"] == "ConfigMap":  # the API takes strings only: "5", "true", not 5, true
            typed = [key for key, value in document["data"].items() if not isinstance(value, str)]
            assert typed == [], f"ConfigMap {document['metadata']['name']}: quote {typed}"


def test_kustomize_builds_into_the_namespace_with_the_project_images(spawn: None) -> None:
    if not shutil.which("kubectl"):
        pytest.skip("no kubectl here to run `kubectl kustomize`")
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S_DIR)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    built = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert len(built) == len(k8s_documents())
    assert all(doc["metadata"].get("namespace") == NAMESPACE for doc in built if doc["kind"] != "Namespace")
    images = {c["image"] for doc in built if doc["kind"] == "Deployment" for c in pod_containers(doc)}
    assert {image.split(":")[0] for image in images} == set(IMAGES)


def test_selectors_pick_their_own_pods() -> None:
    for name in DEPLOYMENTS:
        spec = deployment(name)["spec"]
        assert _selects(spec["selector"]["matchLabels"], deployment(name)), name
    for service in ("embed-bench-target", "embed-bench-master"):
        selector = k8s_object("Service", service)["spec"]["selector"]
        picked = [d for d in DEPLOYMENTS if _selects(selector, deployment(d))]
        assert len(picked) == 1, f"Service {service} selects {picked}"


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_containers_run_real_flags_and_expand_defined_variables(name: str, spawn: None) -> None:
    spec = container(name)
    env = container_env(spec)
    for arg in [*spec.get("command", []), *spec.get("args", [])]:
        undefined = [ref for ref in k8s_references(arg) if ref not in env]
        assert undefined == [], f"{name}: $({undefined[0]}) is not defined in the container"
    assert unknown_flags(call_of(name)) == []


def test_target_on_one_gpu_with_probes_on_the_server_port() -> None:
    spec = container("embed-bench-target")
    pod = deployment("embed-bench-target")["spec"]["template"]["spec"]
    assert int(spec["resources"]["limits"]["nvidia.com/gpu"]) == 1
    assert pod["nodeSelector"]["node.kubernetes.io/instance-type"] == "g5.xlarge"  # the study's A10G node
    server = call_of("embed-bench-target")
    assert server.program == "target_server" and server.value("--host") == "0.0.0.0"
    port = int(server.value("--port"))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = spec[probe]["httpGet"]
        assert (get["path"], container_port(spec, get["port"])) == ("/health", port), probe
    service_port_number, target_port = service_port("embed-bench-target", "http")
    assert target_port == port
    url = config_map("embed-bench-locust")["EMBED_BENCH_TARGET_URL"]
    assert (url_host(url), url_port(url)) == ("embed-bench-target", service_port_number)


def test_target_settings_are_valid_server_settings(monkeypatch) -> None:
    settings = container_env(container("embed-bench-target"))
    assert set(settings) <= target_env_vars(), sorted(set(settings) - target_env_vars())
    for name in [name for name in os.environ if name.startswith(ENV_PREFIX + "_")]:
        monkeypatch.delenv(name)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    _, config = resolve_config()
    assert (config.device, config.batching) == ("cuda", "continuous")


def test_master_workers_and_services_agree(spawn: None) -> None:
    master, worker = locust_options("embed-bench-master"), locust_options("embed-bench-worker")
    assert master["master"] and worker["worker"]
    bind_port, bind_target = service_port("embed-bench-master", "master")
    web_port, web_target = service_port("embed-bench-master", "web")
    assert worker["master_host"] == "embed-bench-master" and worker["master_port"] == bind_port
    assert bind_target == master["master_bind_port"] and web_target == master["web_port"]
    assert web_port == web_target  # `kubectl port-forward svc/embed-bench-master 8089` is the web UI
    assert {bind_target, web_target} <= dockerfile("locust").exposed_ports()
    replicas = deployment("embed-bench-worker")["spec"]["replicas"]
    assert master["expect_workers"] == replicas
    assert master["autostart"] is True and master["grid"] == "quick"
    assert master["user_classes"] == worker["user_classes"] == ["SelfHostedUser"]
    assert master["host"] == "http://embed-bench-target:8000"


def test_run_directory_is_on_the_claimed_volume(spawn: None) -> None:
    options = locust_options("embed-bench-master")
    run_dir = PurePosixPath(options["run_dir"])
    assert PurePosixPath(options["csv_prefix"]).parent == run_dir and options["stats_history_enabled"]
    assert run_dir.name == container_env(container("embed-bench-master"))["RUN_NAME"]
    spec = container("embed-bench-master")
    pod = deployment("embed-bench-master")["spec"]["template"]["spec"]
    (mount,) = [m for m in spec["volumeMounts"] if run_dir.is_relative_to(m["mountPath"])]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert k8s_object("PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert deployment("embed-bench-master")["spec"]["strategy"]["type"] == "Recreate"
    assert pod["securityContext"]["fsGroup"]  # the image's non-root user writes the volume


def test_every_variable_is_one_the_containers_read(spawn: None) -> None:
    locust_names = locust_container_env_vars() | aws_setting_env_vars()
    for name in ("embed-bench-master", "embed-bench-worker"):
        spec = container(name)
        referenced = {ref for arg in spec.get("args", []) for ref in k8s_references(arg)}
        unknown = set(container_env(spec)) - locust_names - referenced
        assert unknown == set(), f"{name}: no program reads {sorted(unknown)}"


def test_secrets_are_referenced_never_written() -> None:
    secrets = credential_env_vars()
    for name in DEPLOYMENTS:
        spec = container(name)
        literal = {v["name"] for v in spec.get("env", []) if "value" in v}
        assert secrets.isdisjoint(literal | set(container_env(spec))), f"{name} holds a secret in a manifest"
    for name in ("embed-bench-master", "embed-bench-worker"):
        refs = [s["secretRef"] for s in container(name)["envFrom"] if "secretRef" in s]
        assert refs == [{"name": "embed-bench-secrets", "optional": True}], name


def test_secrets_example_holds_only_placeholders_of_real_variables() -> None:
    example = read_env_file(K8S_DIR / "secrets.env.example")
    assert example and set(example) <= credential_env_vars(), sorted(set(example) - credential_env_vars())
    for key, value in example.items():
        assert set(value.split("_")[-1].removeprefix("AKIA")) <= {"x", "X"}, f"{key} is not a placeholder"
