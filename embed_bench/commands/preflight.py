"""Checks ``embed-bench run`` makes before it writes or starts anything.

- The Locust command line, pass-through options included, goes through Locust's own parser with
  embed-bench's options added (in a child process: importing Locust monkey-patches the importer
  with gevent), so a typo fails at once, with Locust's "Did you mean ...?".
- The target: a host that does not resolve, or where nothing listens, is said so within seconds;
  only a self-hosted server whose ``/health`` says it is still loading is waited for, and one whose
  ``/health`` reports a failed load stops the wait at once with the server's reason.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from embed_bench.core.options import OPTION_SPECS, add_bench_options

CONNECT_RETRY_S = 5.0  # how long a target that refuses connections is retried
POLL_S = 0.5


class PreflightError(Exception):
    """What is wrong before the run starts; ``exit_code`` 2 for a bad command line, 3 for the target."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def parse_locust_args(args: Sequence[str]) -> dict[str, Any]:
    """``args`` (a ``locust`` command line without the program) parsed as Locust will parse them:
    the values of embed-bench's options and ``num_users``.

    The parse runs in a child process, because importing Locust monkey-patches the importing process
    with gevent: neither this CLI nor a test process that calls it may be patched as a side effect.
    """
    result = subprocess.run(
        [sys.executable, "-m", "embed_bench.commands.preflight", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        message = "\n".join(line.split(": error: ", 1)[-1] for line in lines) or "invalid"
        raise PreflightError(f"Locust options: {message}", exit_code=2)
    return json.loads(result.stdout)


def _parse_here(args: Sequence[str]) -> dict[str, Any]:
    """The child's side of ``parse_locust_args``: Locust's parser with embed-bench's options added."""
    from locust.argument_parser import get_parser

    parser = get_parser()
    add_bench_options(parser)
    namespace = vars(parser.parse_args(list(args)))  # exits 2 with Locust's message on a mistake
    return {name: namespace.get(name) for name in [*(spec.dest for spec in OPTION_SPECS), "num_users"]}


def check_resolves(host: str) -> None:
    """A host name that does not resolve is a typo or a network problem, never worth waiting for."""
    parts = urlsplit(host)
    try:
        socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except socket.gaierror as error:
        raise PreflightError(
            f"cannot resolve {parts.hostname!r} ({error.strerror or error}); is --host right?", exit_code=3
        ) from None


def health(url: str, timeout_s: float = 2.0) -> tuple[int | None, str]:
    """``GET url``: the status (None when nothing answers) and the ``status`` field of a JSON body,
    else why nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, _status_field(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _status_field(error.read())
    except OSError as error:
        reason = getattr(error, "reason", error)
        return None, getattr(reason, "strerror", None) or str(reason)


def _status_field(body: bytes) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return ""
    return str(document.get("status", "")) if isinstance(document, dict) else ""


def connect(host: str) -> str | None:
    """A TCP connect to the host's port: None when it connects, else why not."""
    parts = urlsplit(host)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=5):
            return None
    except OSError as error:
        return error.strerror or str(error)


def wait_reachable(host: str, health_path: str | None, timeout_s: float) -> None:
    """Wait until the target answers: ``health_path`` 200 where the backend has one, else a TCP
    connect. Nothing listening is retried for ``CONNECT_RETRY_S`` only; a self-hosted server that
    says it is loading, for up to ``timeout_s``; a failed load is reported at once."""
    check_resolves(host)
    started = time.monotonic()
    announced = False
    while True:
        loading = False
        if health_path:
            status, detail = health(f"{host}{health_path}")
            if status == 200:
                return
            if status is not None and detail.startswith("failed"):
                raise PreflightError(f"{host}{health_path} reports {detail}", exit_code=3)
            loading = status == 503 and detail in ("loading", "starting")
            problem = detail if status is None else f"{health_path} answers {status} {detail}".rstrip()
        else:
            problem = connect(host)
            if problem is None:
                return
        waited = time.monotonic() - started
        if waited >= (timeout_s if loading else min(timeout_s, CONNECT_RETRY_S)):
            raise PreflightError(
                f"cannot reach {host} ({problem}) after {waited:.0f} s; is the target running and --host right?",
                exit_code=3,
            )
        if loading and not announced:
            print(f"waiting up to {timeout_s:g} s for {host} ({problem}) ...", file=sys.stderr, flush=True)
            announced = True
        time.sleep(POLL_S)


if __name__ == "__main__":
    print(json.dumps(_parse_here(sys.argv[1:])))
