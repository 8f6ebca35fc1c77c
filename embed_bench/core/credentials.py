"""Credentials bound to their host: where an API key or AWS credential may be sent.

A Jina API key, an OpenAI-compatible server's key or AWS credentials are configured for one host:
the backend's own (the Jina API, the SageMaker runtime of a region) or the host given at start
(``--host`` / ``LOCUST_HOST``). The Locust web form can start a run against any other host; such a
run must not carry the configured credentials there, only a key entered in that same form.

Hosts are compared by origin -- scheme, host name and port, as browsers scope credentials -- so
``https://api.jina.ai`` and ``https://api.jina.ai:443/`` are one host, ``http://api.jina.ai`` and
``https://api.jina.ai.evil.example`` are others. Kept free of Locust imports: the rules are plain
functions, ``embed_bench.load.credentials`` applies them to a Locust process.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

# The parsed-options attribute the process that starts a run (the master, or the only process) sets
# to the host the run's API key is bound to; Locust ships it to the workers with every spawn message.
KEY_HOST_OPTION = "embed_bench_key_host"

# The web UI's login (Locust's --web-login; embed_bench.load.web_ui): one user, from the environment
# of the process that serves it. The password is a secret, like the API keys.
WEB_USERNAME_ENV = "EMBED_BENCH_WEB_USERNAME"
WEB_PASSWORD_ENV = "EMBED_BENCH_WEB_PASSWORD"
DEFAULT_WEB_USERNAME = "embed-bench"

Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}
# AWS's own SageMaker runtime hosts: where AWS credentials may always go.
_SAGEMAKER_RUNTIME = re.compile(r"runtime\.sagemaker\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")


def origin(url: str | None) -> Origin | None:
    """(scheme, host name, port) of a URL, lower-cased, the default port filled in; None when the URL
    names no http(s) host."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, hostname = parts.scheme.lower(), (parts.hostname or "").lower().rstrip(".")
    if scheme not in _DEFAULT_PORTS or not hostname:
        return None
    return scheme, hostname, port if port is not None else _DEFAULT_PORTS[scheme]


def describe(url: str | None) -> str:
    """A host as the web UI names it: ``https://api.jina.ai``."""
    found = origin(url)
    return "(none)" if found is None else _shown(found)


def _shown(found: Origin) -> str:
    scheme, hostname, port = found
    name = f"[{hostname}]" if ":" in hostname else hostname
    return f"{scheme}://{name}" + ("" if port == _DEFAULT_PORTS[scheme] else f":{port}")


@dataclass(frozen=True)
class HostScope:
    """The hosts a credential may be sent to."""

    origins: frozenset[Origin]

    @classmethod
    def of(cls, hosts: Iterable[str | None]) -> HostScope:
        return cls(frozenset(found for found in map(origin, hosts) if found is not None))

    def allows(self, url: str | None) -> bool:
        found = origin(url)
        return found is not None and found in self.origins

    def names(self) -> list[str]:
        return sorted(_shown(found) for found in self.origins)


def is_sagemaker_runtime(url: str | None) -> bool:
    """An https URL of AWS's own SageMaker runtime (any region)."""
    found = origin(url)
    return found is not None and found[0] == "https" and bool(_SAGEMAKER_RUNTIME.fullmatch(found[1]))


def api_key_scope(start_host: str | None, default_host: str | None, key_host: str | None) -> HostScope:
    """Where this process may send its API key: the host it was started with, the backend's own
    host, and the host the run's key is bound to (``KEY_HOST_OPTION``, set where the run started)."""
    return HostScope.of((start_host, default_host, key_host))


def aws_allows(url: str | None, start_host: str | None) -> bool:
    """AWS credentials sign requests only to AWS's SageMaker runtime or to the host given at start
    (a SageMaker double, a VPC endpoint): never to a host typed into the web form."""
    return is_sagemaker_runtime(url) or HostScope.of((start_host,)).allows(url)


def is_loopback(address: str | None) -> bool:
    """Whether a bind address takes connections from this machine only (127.0.0.0/8, ::1,
    localhost). Empty, '*', 0.0.0.0, :: and host names face a network."""
    host = (address or "").strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
