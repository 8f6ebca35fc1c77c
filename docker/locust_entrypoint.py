"""Entrypoint of the Locust image: ``EMBED_BENCH_BACKEND`` picks the locustfile and user class.

Why a script rather than ``ENTRYPOINT ["locust"]``: in a swarm every setting comes from the
environment (an env file for docker-compose, a ConfigMap and a Secret on Kubernetes), and the one
setting Locust cannot take from there is which locustfile and user class a backend name stands for.
That lives in ``embed_bench.core.backends.BACKENDS``, the registry ``embed-bench run --backend`` also uses, so the
container's backend names are the CLI's. The script fills in Locust's own variables and then
replaces itself with Locust (``exec``), so Locust is PID 1 and gets ``docker stop``'s SIGTERM.

- ``EMBED_BENCH_BACKEND`` (default ``self-hosted``): sets ``LOCUST_LOCUSTFILE`` and
  ``LOCUST_USER_CLASSES`` unless they are set already (add your own plugin files that way).
- ``LOCUST_HOST`` unset or empty: the host the registry derives for the backend (the Jina API; the
  SageMaker runtime of ``LOCUST_AWS_REGION`` or the boto3 default region); for the backends that can
  talk to the bundled server, ``EMBED_BENCH_TARGET_URL`` (the compose / Kubernetes service of the
  target).
- ``EMBED_BENCH_BIND`` (compose passes the address it publishes the web UI on): an address beyond
  loopback turns on the web UI's login (``LOCUST_WEB_LOGIN=true``) and needs
  ``EMBED_BENCH_WEB_PASSWORD`` (user: ``EMBED_BENCH_WEB_USERNAME``, default ``embed-bench``); without
  one the container does not start.
- Arguments are Locust's; a first argument that is not an option runs as a command instead
  (``docker compose run master bash``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from embed_bench.core.backends import BACKENDS, BackendError, Settings
from embed_bench.core.credentials import WEB_PASSWORD_ENV, WEB_USERNAME_ENV, is_loopback

BACKEND_ENV = "EMBED_BENCH_BACKEND"
TARGET_URL_ENV = "EMBED_BENCH_TARGET_URL"
BIND_ENV = "EMBED_BENCH_BIND"
DEFAULT_BACKEND = "self-hosted"
# The variables this script (or the web UI's login it turns on) reads, for the tests that check the
# deployment files name no others.
READS = (BACKEND_ENV, TARGET_URL_ENV, BIND_ENV, WEB_USERNAME_ENV, WEB_PASSWORD_ENV)


class EntrypointError(ValueError):
    """A setting that cannot start Locust; the message says what to set."""


def locust_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment Locust runs with: ``environ`` plus the backend's locustfile, class and host."""
    env = dict(environ)
    name = env.get(BACKEND_ENV, "").strip() or DEFAULT_BACKEND
    if name not in BACKENDS:
        raise EntrypointError(f"{BACKEND_ENV}={name!r} is not a backend; choose one of {', '.join(BACKENDS)}")
    backend = BACKENDS[name]
    if not env.get("LOCUST_LOCUSTFILE", "").strip():
        env["LOCUST_LOCUSTFILE"] = str(backend.locustfile)
    if not env.get("LOCUST_USER_CLASSES", "").strip():
        env["LOCUST_USER_CLASSES"] = backend.user_class
    host = env.get("LOCUST_HOST", "").strip()
    if not host and backend.talks_to_bundled_target:
        host = env.get(TARGET_URL_ENV, "").strip()
    if not host:
        try:
            host = backend.host(Settings((), env)) or ""
        except BackendError as error:
            raise EntrypointError(str(error)) from None
    if host:
        env["LOCUST_HOST"] = host
    else:
        env.pop("LOCUST_HOST", None)  # an empty --host would hide a host the user class derives
    bind = env.get(BIND_ENV, "").strip()
    if bind and not is_loopback(bind):
        if not env.get(WEB_PASSWORD_ENV, ""):
            raise EntrypointError(
                f"{BIND_ENV}={bind} publishes the web UI beyond this machine: set {WEB_PASSWORD_ENV} "
                f"(and {WEB_USERNAME_ENV}) in swarm.env for its login, or leave {BIND_ENV} at 127.0.0.1"
            )
        env["LOCUST_WEB_LOGIN"] = "true"
    return env


def command(argv: Sequence[str]) -> list[str]:
    """Locust with ``argv``; or ``argv`` itself when it starts with a program instead of an option."""
    if argv and not argv[0].startswith("-"):
        return list(argv)
    return [sys.executable, "-m", "locust", *argv]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        env = locust_environment(os.environ)
    except EntrypointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    program = command(args)
    os.execvpe(program[0], program, env)
    return 0  # not reached: exec replaces this process


if __name__ == "__main__":
    sys.exit(main())
