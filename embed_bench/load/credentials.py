"""Credentials bound to their host, in a Locust process (the rules: ``embed_bench.core.credentials``).

- At ``init`` every process notes the host and API key it was started with (``--host`` /
  ``LOCUST_HOST``, ``--api-key`` / ``LOCUST_API_KEY``): the web form changes both in the parsed
  options later, so they are kept here, and the run's key is bound to that host
  (``KEY_HOST_OPTION`` in the parsed options, which Locust ships to the workers).
- A start from the web form (``form_submitted``, called by ``embed_bench.load.web_ui`` after Locust's
  ``/swarm`` handler, before any user of the run exists): a key entered in the form is bound to the
  form's host; a blank key field means the key configured at start, still bound to the start host.
- A user sends its API key (``api_key_for``) only to its backend's own host, the host its process
  was started with, or the host the run's key is bound to; AWS credentials (``aws_allowed``) only to
  AWS's SageMaker runtime or the start host. Anything else gets the request without credentials,
  and one log line says why.
"""

from __future__ import annotations

from locust import events  # first: gevent monkey-patches before anything else loads
from locust.env import Environment

# isort: split
import logging
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from embed_bench.core.credentials import (
    KEY_HOST_OPTION,
    HostScope,
    api_key_scope,
    aws_allows,
    describe,
)
from embed_bench.core.options import BenchOptions

logger = logging.getLogger(__name__)

API_KEY_FIELD = "api_key"


@dataclass(frozen=True)
class StartSettings:
    """What the process was started with, before any web form changed the parsed options."""

    host: str | None
    api_key: str


_STARTS: weakref.WeakKeyDictionary[Environment, StartSettings] = weakref.WeakKeyDictionary()
_WITHHELD: set[tuple[str, str]] = set()  # (credential, host) already logged by this process


def _read_start(environment: Environment) -> StartSettings:
    namespace = environment.parsed_options
    host = str(getattr(namespace, "host", None) or "").strip() or None
    return StartSettings(host, str(getattr(namespace, API_KEY_FIELD, None) or "").strip())


def capture_start(environment: Environment) -> StartSettings:
    """Note the start settings (once per environment) and bind the run's key to the start host."""
    start = _STARTS.get(environment)
    if start is None:
        start = _STARTS[environment] = _read_start(environment)
        if environment.parsed_options is not None:
            setattr(environment.parsed_options, KEY_HOST_OPTION, start.host)
    return start


def start_settings(environment: Environment) -> StartSettings:
    return _STARTS.get(environment) or capture_start(environment)


@events.init.add_listener
def _on_init(environment: Environment, **_kwargs: Any) -> None:
    capture_start(environment)


def key_host(environment: Environment) -> str | None:
    return getattr(environment.parsed_options, KEY_HOST_OPTION, None) or None


def _withheld(credential: str, host: str | None, allowed: Iterable[str]) -> None:
    shown = describe(host)
    if (credential, shown) in _WITHHELD:
        return
    _WITHHELD.add((credential, shown))
    logger.warning(
        "%s not sent to %s: it is bound to %s (the host given at start or the backend's own); "
        "enter a key in the web form to use one there",
        credential,
        shown,
        ", ".join(allowed) or "no host",
    )


def api_key_for(environment: Environment, host: str | None, default_host: str | None) -> str:
    """The API key to send to ``host``, or "" when none may go there."""
    key = BenchOptions.from_namespace(environment.parsed_options).effective_api_key()
    if not key:
        return ""
    scope = api_key_scope(start_settings(environment).host, default_host, key_host(environment))
    if scope.allows(host):
        return key
    _withheld("API key", host, scope.names())
    return ""


def aws_allowed(environment: Environment, url: str | None) -> bool:
    """Whether AWS credentials may sign a request to ``url``."""
    start_host = start_settings(environment).host
    if aws_allows(url, start_host):
        return True
    _withheld("AWS credentials", url, [*HostScope.of((start_host,)).names(), "AWS's SageMaker runtime"])
    return False


def form_submitted(environment: Environment, form: Mapping[str, str], succeeded: bool) -> None:
    """After Locust's ``/swarm`` handler: bind the run's key to the host it may go to.

    A key entered in the form goes to the form's host; otherwise the key configured at start is
    restored (Locust wrote the blank field over it) and stays bound to the start host."""
    namespace = environment.parsed_options
    if namespace is None:
        return
    start = start_settings(environment)
    entered = str(form.get(API_KEY_FIELD, "") or "").strip()
    if succeeded and entered:
        setattr(namespace, KEY_HOST_OPTION, environment.host)
    else:
        setattr(namespace, KEY_HOST_OPTION, start.host)
        setattr(namespace, API_KEY_FIELD, start.api_key)


def form_note(environment: Environment, default_hosts: Iterable[str | None]) -> str:
    """The line the web form shows for the API key field."""
    hosts = HostScope.of((start_settings(environment).host, *default_hosts)).names()
    where = " or ".join(hosts) if hosts else "no host (none was given at start)"
    return (
        "Bearer token. Blank: the key configured at start (--api-key, JINA_API_KEY), sent only to "
        f"{where}. A run against any other host sends no key or AWS credentials unless you enter a "
        "key here"
    )
