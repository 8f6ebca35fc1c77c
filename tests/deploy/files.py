"""Readers of the deployment files (compose, manifests, Dockerfiles, env files, .dockerignore).

The tests check these files against the project, so the readers follow the tools' own rules closely
enough to see what a container would really run: compose's ``${VAR:-default}`` interpolation, the
``ENTRYPOINT`` + ``CMD`` pairing of an image, Kubernetes' ``$(VAR)`` expansion in ``args``, and
``.dockerignore``'s last-match-wins patterns.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
K8S_DIR = REPO / "deploy" / "k8s"
DOCKERFILES = {
    "target": REPO / "docker" / "Dockerfile.target",
    "locust": REPO / "docker" / "Dockerfile.locust",
}
IMAGES = {"embed-bench-target": "target", "embed-bench-locust": "locust"}  # image name -> Dockerfile

# --- compose -------------------------------------------------------------------------------------
_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?error}``; an unset variable without a default becomes empty, as compose does."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in ("-", ":-") and unset:
            return arg
        if op in ("?", ":?") and unset:
            raise ValueError(f"${{{name}}} must be set: {arg}")
        return value or ""

    return _INTERPOLATION.sub(replace, text)


def _interpolate_all(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_all(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_all(value, env) for key, value in node.items()}
    return node


def compose_raw() -> dict[str, Any]:
    """docker-compose.yml as YAML (anchors and ``<<`` merge keys resolved), not interpolated."""
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml interpolated with ``env`` (an empty shell by default)."""
    return _interpolate_all(compose_raw(), env or {})


def as_list(command: Any) -> list[str]:
    """A compose ``command`` / ``entrypoint`` / healthcheck ``test``: a list, or a string split on spaces."""
    if command is None:
        return []
    return [str(part) for part in command] if isinstance(command, list) else str(command).split()


def service_environment(service: Mapping[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def env_file_entries(service: Mapping[str, Any]) -> list[tuple[Path, bool]]:
    """(path, required) of each ``env_file`` entry, paths relative to the compose file."""
    entries = service.get("env_file") or []
    entries = [entries] if isinstance(entries, str) else entries
    found = []
    for entry in entries:
        if isinstance(entry, str):
            found.append((COMPOSE_FILE.parent / entry, True))
        else:
            found.append((COMPOSE_FILE.parent / entry["path"], entry.get("required", True)))
    return found


# --- env files -----------------------------------------------------------------------------------
_ASSIGNMENT = re.compile(r"^(?P<comment>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def read_env_file(path: Path, commented: bool = False) -> dict[str, str]:
    """``KEY=value`` lines; with ``commented``, also the ``# KEY=value`` lines of an example file."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _ASSIGNMENT.match(line.strip())
        if match and (commented or not match.group("comment")):
            found[match.group("name")] = match.group("value").strip()
    return found


# --- Kubernetes ----------------------------------------------------------------------------------
def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text(encoding="utf-8"))


def k8s_documents() -> list[dict[str, Any]]:
    """Every object of the manifests the kustomization lists, in order."""
    documents = []
    for name in kustomization()["resources"]:
        text = (K8S_DIR / name).read_text(encoding="utf-8")
        documents += [doc for doc in yaml.safe_load_all(text) if doc is not None]
    return documents


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in k8s_documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def pod_containers(deployment: Mapping[str, Any]) -> list[dict[str, Any]]:
    return deployment["spec"]["template"]["spec"]["containers"]


def container_port(container: Mapping[str, Any], port: int | str) -> int:
    """A probe's or Service's port, resolved through the container's named ports."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in named, f"container {container['name']} has no port named {port!r}"
    return named[port]


_K8S_REFERENCE = re.compile(r"\$\((?P<name>[A-Za-z_][A-Za-z0-9_]*)\)")


def k8s_expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion in ``command`` and ``args``; an undefined one stays as written."""
    return _K8S_REFERENCE.sub(lambda m: env.get(m.group("name"), m.group(0)), text)


def k8s_references(text: str) -> list[str]:
    return [match.group("name") for match in _K8S_REFERENCE.finditer(text)]


# --- Dockerfiles ---------------------------------------------------------------------------------
@dataclass
class Dockerfile:
    """The instructions of a Dockerfile that decide what its container runs and contains."""

    path: Path
    instructions: list[tuple[str, str]]
    args: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))  # line continuations
        instructions = []
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                keyword, _, rest = line.partition(" ")
                instructions.append((keyword.upper(), rest.strip()))
        args = {}
        for keyword, rest in instructions:
            if keyword == "ARG" and "=" in rest:
                name, value = rest.split("=", 1)
                args[name] = value
        return cls(path, instructions, args)

    def all(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]

    def exec_form(self, keyword: str) -> list[str]:
        """The JSON (exec) form of the last ENTRYPOINT / CMD; shell forms are not used here."""
        found = self.all(keyword)
        if not found:
            return []
        value = json.loads(found[-1])
        assert isinstance(value, list), f"{self.path.name}: {keyword} must use the exec (JSON) form"
        return value

    def healthcheck(self) -> list[str]:
        (rest,) = self.all("HEALTHCHECK")
        _, cmd, exec_form = rest.partition("CMD ")
        assert cmd, f"{self.path.name}: HEALTHCHECK without CMD"
        return json.loads(exec_form)

    def base_image(self) -> str:
        (image,) = self.all("FROM")
        return re.sub(r"\$\{(\w+)\}", lambda m: self.args[m.group(1)], image.split()[0])

    def exposed_ports(self) -> set[int]:
        return {int(port.split("/")[0]) for rest in self.all("EXPOSE") for port in rest.split()}

    def copies(self) -> dict[str, Path]:
        """Container path -> repository path of every COPY (relative destinations under WORKDIR)."""
        workdir = "/"
        found: dict[str, Path] = {}
        for keyword, rest in self.instructions:
            if keyword == "WORKDIR":
                workdir = rest if rest.startswith("/") else f"{workdir.rstrip('/')}/{rest}"
            elif keyword == "COPY":
                parts = [part for part in rest.split() if not part.startswith("--")]
                *sources, destination = parts
                base = destination if destination.startswith("/") else f"{workdir.rstrip('/')}/{destination}"
                for source in sources:
                    inside = base.rstrip("/") + "/" + source if destination.endswith("/") else base
                    found[inside.replace("/./", "/")] = REPO / source
        return found

    def repo_path(self, container_path: str) -> Path | None:
        """Where a path inside the image comes from in this repository, or None if not copied."""
        for inside, source in sorted(self.copies().items(), key=lambda item: -len(item[0])):
            if container_path == inside or container_path.startswith(inside.rstrip("/") + "/"):
                return source / container_path[len(inside) :].lstrip("/")
        return None


@cache
def dockerfile(kind: str) -> Dockerfile:
    return Dockerfile.read(DOCKERFILES[kind])


# --- .dockerignore -------------------------------------------------------------------------------
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out, index = out + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            out, index = out + ".*", index + 2
        elif pattern[index] == "*":
            out, index = out + "[^/]*", index + 1
        elif pattern[index] == "?":
            out, index = out + "[^/]", index + 1
        else:
            out, index = out + re.escape(pattern[index]), index + 1
    return re.compile(out + r"\Z")


def dockerignored(relative: str, patterns: list[str]) -> bool:
    """Docker's rule: patterns in order, the last one matching the path or a parent of it wins."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!").strip("/"))
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not negate
    return ignored


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def files_under(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
    else:
        yield from (p for p in sorted(path.rglob("*")) if p.is_file() and "__pycache__" not in p.parts)


# --- URLs ----------------------------------------------------------------------------------------
def url_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def url_host(url: str) -> str:
    return urlsplit(url).hostname or ""


def container_argv(entrypoint: list[str] | None, command: list[str] | None, image: Dockerfile) -> list[str]:
    """What a container runs, by Docker's (and Kubernetes') rule: an entrypoint override drops the
    image's CMD; a command (``args`` on Kubernetes) replaces the CMD."""
    if entrypoint:
        return [*entrypoint, *(command or [])]
    return [*image.exec_form("ENTRYPOINT"), *(command if command else image.exec_form("CMD"))]
