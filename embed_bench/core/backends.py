"""The backend registry: what ``--backend NAME`` runs, and what each backend needs to run.

Each entry carries its behaviour -- which credentials it needs, how its host is derived, where its
model name comes from, how to tell that it is ready -- so ``embed-bench run`` and the container
entrypoint ask the registry instead of comparing backend names (vLLM's ``ASYNC_REQUEST_FUNCS``, aiperf's
factories).

Settings are read the way Locust reads them: a command-line option (``--aws-region us-east-1``) wins,
else its ``LOCUST_...`` environment variable. Kept free of Locust imports: the ``embed-bench run``
process must not be monkey-patched by gevent.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# The top-level ``locustfiles/`` package, found without importing it (nothing in it may load here:
# importing ``locust`` monkey-patches the ``embed-bench run`` process with gevent).
LOCUSTFILES_DIR = Path(__file__).resolve().parents[2] / "locustfiles"
JINA_API_URL = "https://api.jina.ai"
STUDY_MODEL = "jina-embeddings-v3"
API_KEY_ENVS = ("LOCUST_API_KEY", "JINA_API_KEY")


# run.json's ``hardware``: the target's own description (``/info``), HOSTED for a provider's API whose
# hardware is the provider's, or None where nothing says.
HOSTED = "hosted"
Hardware = dict[str, object] | str | None


class BackendError(ValueError):
    """A setting a backend cannot run without; the message says what to set."""


@dataclass(frozen=True)
class Settings:
    """A run's settings: Locust-style options on a command line, else ``LOCUST_*`` variables."""

    args: Sequence[str] = ()
    environ: Mapping[str, str] = ()  # type: ignore[assignment]

    def get(self, flag: str) -> str | None:
        """``--flag VALUE`` or ``--flag=VALUE`` on the command line, else ``LOCUST_FLAG``; None if unset."""
        for index, arg in enumerate(self.args):
            if arg == flag and index + 1 < len(self.args):
                return self.args[index + 1].strip() or None
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1].strip() or None
        value = dict(self.environ).get("LOCUST_" + flag.removeprefix("--").replace("-", "_").upper(), "")
        return value.strip() or None

    def api_key(self) -> str | None:
        environ = dict(self.environ)
        return next((environ[name].strip() for name in API_KEY_ENVS if environ.get(name, "").strip()), None)


def sagemaker_runtime_url(region: str) -> str:
    return f"https://runtime.sagemaker.{region}.amazonaws.com"


def get_json(url: str, key: str | None = None, timeout_s: float = 5.0) -> object | None:
    """GET a JSON document, or None when nothing (or no JSON) answers."""
    return fetch_json(url, key, timeout_s=timeout_s)[0]


def fetch_json(
    url: str, key: str | None = None, body: object | None = None, timeout_s: float = 5.0
) -> tuple[object | None, str]:
    """GET (or, with ``body``, POST as JSON) a URL: its JSON document (None when there is none) and
    what answered, for a message: ``HTTP 200``, ``HTTP 404 {"detail":"Not Found"}``, ``connection
    refused``."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            content = response.read(8_000_000)
            status = response.status
    except urllib.error.HTTPError as error:
        snippet = error.read(300).decode("utf-8", "replace").strip().replace("\n", " ")
        return None, f"HTTP {error.code}" + (f" {snippet[:160]}" if snippet else "")
    except OSError as error:
        reason = getattr(error, "reason", error)
        return None, str(getattr(reason, "strerror", None) or reason)
    try:
        return json.loads(content), f"HTTP {status}"
    except ValueError:
        return None, f"HTTP {status} (not JSON)"


@dataclass(frozen=True)
class Backend:
    """What ``--backend NAME`` runs (``locust -f <locustfile> <user_class>``) and what it needs."""

    name: str
    locustfile: Path
    user_class: str
    description: str
    default_host: str | None = None
    # Self-hosted targets answer GET /health (200 once loaded; 503 with the reason while not).
    health_path: str | None = None
    # The bundled target server answers this backend's requests (compose / Kubernetes wire it up).
    talks_to_bundled_target: bool = False

    def check_credentials(self, settings: Settings) -> None:
        """Raise BackendError when a credential or required setting is missing."""

    def host(self, settings: Settings) -> str | None:
        """The host to use when none is given; None when the user must give one."""
        return self.default_host

    def model(self, settings: Settings, host: str) -> str | None:
        """The model the run measures (recorded in run.json): ``--model`` as sent."""
        return settings.get("--model")

    def discovered_args(self, settings: Settings, host: str, model: str | None) -> list[str]:
        """Options the pre-run check found on the target (an endpoint path), for the Locust command
        line; raises BackendError when the target does not answer what the run will send."""
        return []

    def hardware(self, settings: Settings, host: str) -> Hardware:
        """What serves the requests (run.json's ``hardware``): the target's own ``/info`` where it
        describes its hardware (the bundled server does), else None: unknown, and never guessed."""
        info = get_json(f"{host}/info", settings.api_key())
        hardware = info.get("hardware") if isinstance(info, dict) else None
        return hardware if isinstance(hardware, dict) else None


@dataclass(frozen=True)
class SelfHostedBackend(Backend):
    def model(self, settings: Settings, host: str) -> str | None:
        """The bundled server's ``/embed`` names no model: ask its ``/info``."""
        info = get_json(f"{host}/info", settings.api_key())
        return info.get("model") if isinstance(info, dict) else None


# Where OpenAI-compatible servers list their models and answer embeddings, in the order tried: TEI,
# vLLM and the bundled server under /v1, Infinity at the root.
MODELS_PATHS = ("/v1/models", "/models")
EMBEDDINGS_PATHS = ("/v1/embeddings", "/embeddings")
# Answers that mean "no such path here": the next path is tried. A busy or failing server (429, 5xx)
# shows the path is there, and the run shows what its requests get; any other answer is the server's
# verdict on the request itself (a wrong model or key), and the check stops with it.
ABSENT = ("HTTP 404", "HTTP 405")
BUSY = ("HTTP 429", "HTTP 5")


def discover_model(host: str, key: str | None = None) -> tuple[str, str]:
    """The model an OpenAI-compatible server serves, and where it said so (``GET /v1/models``):
    ``/v1/models`` (TEI, vLLM, the bundled server), ``/models`` (Infinity), else ``/info`` (TEI).
    ``embed-bench run --backend openai`` and plain Locust's ``jina_api.py`` on any host but the Jina
    API ask the same; the error names every path tried and what it answered, and ``--model``."""
    host = host.rstrip("/")
    tried = []
    for path in MODELS_PATHS:
        listing, answer = fetch_json(f"{host}{path}", key)
        data = listing.get("data") if isinstance(listing, dict) else None
        if isinstance(data, list) and data and isinstance(data[0], dict) and data[0].get("id"):
            return str(data[0]["id"]), f"GET {path}"
        tried.append(f"GET {path}: {answer if listing is None else answer + ', no model listed'}")
    info, answer = fetch_json(f"{host}/info", key)
    model = (info.get("model") or info.get("model_id")) if isinstance(info, dict) else None
    if model:
        return str(model), "GET /info"
    tried.append(f"GET /info: {answer if info is None else answer + ', no model named'}")
    raise BackendError(f"cannot tell which model {host} serves ({'; '.join(tried)}): pass --model NAME")


@dataclass(frozen=True)
class OpenAIBackend(Backend):
    def model(self, settings: Settings, host: str) -> str | None:
        """``--model``, else the server's own (``discover_model``)."""
        given = settings.get("--model")
        if given:
            return given
        return discover_model(host, settings.api_key())[0]

    def discovered_args(self, settings: Settings, host: str, model: str | None) -> list[str]:
        path = self.embeddings_path(settings, host, model)
        return [] if settings.get("--embeddings-path") else ["--embeddings-path", path]

    def embeddings_path(self, settings: Settings, host: str, model: str | None) -> str:
        """The path that answers embeddings: ``--embeddings-path`` if given, else the first of
        ``EMBEDDINGS_PATHS`` that answers a one-input request with a 200 (or a 429 or 5xx: busy, but
        there); 404, 405 or no answer: not there. Raises BackendError naming each path tried and its
        answer, also when a path refuses the request itself (a wrong model or key: 400, 401, 422)."""
        given = settings.get("--embeddings-path")
        candidates = ["/" + given.lstrip("/")] if given else list(EMBEDDINGS_PATHS)
        body = {"model": model, "input": ["embed-bench pre-run check"]}
        tried = []
        for path in candidates:
            _, answer = fetch_json(f"{host}{path}", settings.api_key(), body=body, timeout_s=60.0)
            if answer.startswith(("HTTP 200", *BUSY)):
                return path
            tried.append(f"POST {path}: {answer}")
            if answer.startswith("HTTP ") and not answer.startswith(ABSENT):
                break  # the path is there and refused the request: fix the request, not the path
        hint = "" if given else "; pass --embeddings-path PATH if the server uses another"
        raise BackendError(
            f"{host} answers no embeddings request for model {model!r} ({'; '.join(tried)}){hint}"
        )


@dataclass(frozen=True)
class JinaBackend(Backend):
    def check_credentials(self, settings: Settings) -> None:
        if not settings.api_key():
            raise BackendError("the Jina API needs a key: set JINA_API_KEY (or pass --api-key KEY)")

    def model(self, settings: Settings, host: str) -> str | None:
        return settings.get("--model") or STUDY_MODEL

    def hardware(self, settings: Settings, host: str) -> Hardware:
        """Jina's own API runs on hardware of its choosing; another host may describe its own."""
        return HOSTED if host.rstrip("/") == JINA_API_URL else super().hardware(settings, host)


@dataclass(frozen=True)
class SageMakerBackend(Backend):
    def check_credentials(self, settings: Settings) -> None:
        if not settings.get("--sagemaker-endpoint"):
            raise BackendError("SageMaker needs an endpoint name: pass --sagemaker-endpoint NAME")
        session = _boto3_session(settings)
        if session.get_credentials() is None:
            raise BackendError(
                "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE, or run where an IAM role provides them"
            )
        if not self.region(settings):
            raise BackendError("no AWS region: pass --aws-region REGION or set AWS_DEFAULT_REGION")

    def region(self, settings: Settings) -> str | None:
        return settings.get("--aws-region") or _boto3_session(settings).region_name

    def host(self, settings: Settings) -> str | None:
        region = self.region(settings)
        return sagemaker_runtime_url(region) if region else None

    def model(self, settings: Settings, host: str) -> str | None:
        return settings.get("--model") or STUDY_MODEL

    def hardware(self, settings: Settings, host: str) -> Hardware:
        """A managed endpoint: its instance type is the endpoint's configuration, not the run's."""
        return HOSTED


def _boto3_session(settings: Settings):
    """The boto3 session of the standard credential chain; an unknown profile is a clear error."""
    try:
        import boto3
        import botocore.exceptions
    except ImportError as error:
        raise BackendError("SageMaker needs boto3: pip install 'embed-bench[sagemaker]'") from error
    try:
        return boto3.Session()
    except botocore.exceptions.ProfileNotFound as error:
        raise BackendError(f"{error}: set AWS_PROFILE to a profile in ~/.aws/config, or unset it") from None


# Registry of backends; the keys are the CLI choices of `embed-bench run --backend` and the values of
# the Locust image's EMBED_BENCH_BACKEND.
BACKENDS: dict[str, Backend] = {
    backend.name: backend
    for backend in (
        SelfHostedBackend(
            "self-hosted",
            LOCUSTFILES_DIR / "self_hosted.py",
            "SelfHostedUser",
            "the bundled target server's POST /embed",
            health_path="/health",
            talks_to_bundled_target=True,
        ),
        JinaBackend(
            "jina",
            LOCUSTFILES_DIR / "jina_api.py",
            "JinaApiUser",
            "the hosted Jina Embeddings API (Bearer key from --api-key or JINA_API_KEY, --model, --task)",
            default_host=JINA_API_URL,
        ),
        OpenAIBackend(
            "openai",
            LOCUSTFILES_DIR / "jina_api.py",
            "JinaApiUser",
            "any OpenAI-compatible embeddings server (TEI, vLLM, Infinity, the bundled server's "
            "/v1/embeddings); --model (default: the server's /v1/models) and, if not /v1/embeddings, "
            "--embeddings-path",
            talks_to_bundled_target=True,
        ),
        SageMakerBackend(
            "sagemaker",
            LOCUSTFILES_DIR / "sagemaker.py",
            "SageMakerUser",
            "a SageMaker real-time endpoint running the Jina container (SigV4 from the boto3 credential "
            "chain); set --sagemaker-endpoint and --aws-region",
        ),
    )
}
