"""EmbeddingUser: the abstract Locust user that owns payloads, checks and naming for every backend.

A concrete backend only says how to encode a request body, where to send it (path, headers, auth)
and how to read its response body; everything that makes the numbers comparable lives here:

- naming: measured requests are named after their cell (``b=32 t=512 c=5``), warm-ups ``warmup ...``;
- payloads: each user pops requests prepared before the cell started (``locustfiles.workload``);
- checks: a 200 must carry one finite vector per input, all of one dimension (the dimension of the
  first good response of this process), else it is a failure ``bad body: ...``;
- tokens: ``response_length`` is the tokens embedded (the server's usage when reported, else batch x
  passage tokens; 0 for a failure), so Locust's "Average Content Size" reads as tokens per request;
- failures are named by class (``HTTP 429 RATE_TOKEN_LIMIT_EXCEEDED``, ``timeout``, ``connection
  refused``) and recorded once: no retries; after a 429 or a Retry-After the user waits before its
  next request instead of storming the server.
"""

from __future__ import annotations

from locust import HttpUser, task  # first: gevent monkey-patches before anything else loads
from locust.env import Environment

# isort: split
import errno
import json
import math
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import requests
from requests.auth import AuthBase

from locustfiles.options import BenchOptions
from locustfiles.workload import PlannedRequest, UserAssignment, Workload

IDLE_WAIT_S = 1.0  # a user with nothing left to send in its cell waits in steps of this
MAX_BACKOFF_S = 30.0
_CONNECTION_CLASSES = (
    (ConnectionRefusedError, "connection refused"),
    (ConnectionResetError, "connection reset"),
    (ConnectionAbortedError, "connection aborted"),
    (TimeoutError, "timeout"),
    (ssl.SSLError, "tls error"),
)


class RequestFailure(Exception):
    """A failure whose repr is its message, so Locust's failures table shows just the class."""

    def __repr__(self) -> str:
        return str(self)


class BadBody(ValueError):
    """A 200 response whose body is not what the backend promises."""


@dataclass(frozen=True)
class Embeddings:
    vectors: Sequence[Sequence[float]]
    total_tokens: int | None  # None when the backend reports no usage


def _causes(exc: BaseException, limit: int = 12) -> list[BaseException]:
    """The exception and what it wraps (requests -> urllib3 -> socket), breadth-first and bounded."""
    found: list[BaseException] = []
    queue: list[BaseException] = [exc]
    while queue and len(found) < limit:
        current = queue.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        nested = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        nested += [arg for arg in current.args if isinstance(arg, BaseException)]
        queue += [item for item in nested if isinstance(item, BaseException)]
    return found


def classify_exception(exc: BaseException) -> str:
    """The failure class of a request that got no HTTP response."""
    if isinstance(exc, requests.exceptions.Timeout):
        return "timeout"
    chain = _causes(exc)
    for cause in chain:
        for kind, label in _CONNECTION_CLASSES:
            if isinstance(cause, kind):
                return label
        if isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED:
            return "connection refused"
    text = " ".join(str(cause) for cause in chain).lower()
    if "remotedisconnected" in text or "closed connection" in text or "without response" in text:
        return "connection closed"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection closed"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "connection error"
    return f"request error: {type(exc).__name__}"


def error_code(body: Any) -> str | None:
    """The machine-readable error class in a JSON error body, whichever convention it follows."""
    if not isinstance(body, dict):
        return None
    for key in ("code", "error_type"):  # Jina API; the bundled server
        if isinstance(body.get(key), str) and body[key]:
            return body[key]
    error = body.get("error")
    if isinstance(error, dict):  # OpenAI: {"error": {"message", "type", "code"}}
        for key in ("code", "type"):
            if isinstance(error.get(key), str) and error[key]:
                return error[key]
    return None


def check_embeddings(result: Embeddings, inputs: int, dimension: int | None) -> str | None:
    """The failure message for a wrong body, or None when it is right."""
    vectors = result.vectors
    if len(vectors) != inputs:
        return f"bad body: {len(vectors)} embeddings for {inputs} inputs"
    sizes = {len(vector) if isinstance(vector, list) else -1 for vector in vectors}
    if -1 in sizes:
        return "bad body: an embedding is not a list"
    if len(sizes) > 1:
        return f"bad body: embeddings of dimensions {sorted(sizes)}"
    (size,) = sizes
    if size == 0:
        return "bad body: empty embedding"
    if dimension is not None and size != dimension:
        return f"bad body: dimension {size}, expected {dimension}"
    try:
        # A NaN or infinity anywhere makes the sum non-finite; one C-level pass instead of per-item checks.
        total = sum(map(sum, vectors))
    except TypeError:
        return "bad body: non-numeric embedding values"
    if not math.isfinite(total):
        return "bad body: non-finite embedding values"
    return None


def _reject_constant(name: str) -> float:
    raise BadBody("bad body: non-finite embedding values")  # JSON NaN / Infinity literals


def parse_json(content: bytes) -> Any:
    try:
        return json.loads(content, parse_constant=_reject_constant)
    except BadBody:
        raise
    except ValueError as exc:
        raise BadBody("bad body: not JSON") from exc


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare for rate limits, and the default pause covers it


class EmbeddingUser(HttpUser):
    """Abstract: one user of a cell. Subclasses implement the four backend hooks below."""

    abstract = True
    backend: ClassVar[str] = ""  # the BACKENDS key, for logs

    # Per run: the dimension of this process's first good response; every later one must match it.
    _dimensions: ClassVar[dict[str, int]] = {}

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.options = BenchOptions.from_namespace(environment.parsed_options)
        self.assignment: UserAssignment | None = None
        self._pause_s = 0.0

    # --- backend hooks -------------------------------------------------------------------------
    @classmethod
    def encode_request(cls, passages: list[str], options: BenchOptions) -> bytes:
        """The request body for these passages (called ahead of time, outside the timed path)."""
        raise NotImplementedError

    def request_path(self) -> str:
        raise NotImplementedError

    def parse_embeddings(self, body: Any, inputs: int) -> Embeddings:
        """Vectors in input order and the reported tokens; raise BadBody for a malformed body."""
        raise NotImplementedError

    def request_headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        api_key = self.options.effective_api_key()
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        return headers

    def request_auth(self) -> AuthBase | None:
        return None

    def precheck(self, request: PlannedRequest) -> str | None:
        """A failure message for a request that must not be sent at all (e.g. over a body limit)."""
        return None

    def describe_error(self, response: requests.Response) -> str:
        """The failure message of a non-200 response: status and the backend's error code."""
        try:
            code = error_code(json.loads(response.content))
        except ValueError:
            code = None
        return f"HTTP {response.status_code} {code}" if code else f"HTTP {response.status_code}"

    # --- the user's life in a cell ---------------------------------------------------------------
    def wait_time(self) -> float:
        if self._pause_s:
            pause, self._pause_s = self._pause_s, 0.0
            return pause
        return 0.0 if self.assignment and self.assignment.requests else IDLE_WAIT_S

    def on_start(self) -> None:
        workload = Workload.of(self.environment)
        self.assignment = workload.take(type(self)) if workload else None
        if self.assignment is None:
            raise RuntimeError("no prepared cell: embed-bench users run under GridShape (locustfiles.grid)")

    @task
    def embed(self) -> None:
        if not self.assignment or not self.assignment.requests:
            return
        request = self.assignment.requests.popleft()
        self.send(request)
        if request.measured and not self.assignment.requests:
            workload = Workload.of(self.environment)
            if workload is not None:
                workload.report_done(self.assignment.plan)

    def send(self, request: PlannedRequest) -> None:
        failure = self.precheck(request)
        if failure is not None:
            self.environment.events.request.fire(
                request_type="POST",
                name=request.name,
                response_time=0.0,
                response_length=0,
                exception=RequestFailure(failure),
                context={},
            )
            return
        with self.client.post(
            self.request_path(),
            data=request.body,
            headers=self.request_headers(),
            auth=self.request_auth(),
            name=request.name,
            timeout=self.options.request_timeout,
            catch_response=True,
        ) as response:
            failure, tokens = self._outcome(response, request)
            response.request_meta["response_length"] = tokens
            if failure is None:
                response.success()
            else:
                response.failure(RequestFailure(failure))
                self._pause_s = self._backoff(response)

    def _outcome(self, response: Any, request: PlannedRequest) -> tuple[str | None, int]:
        if response.error is not None and response.status_code == 0:
            return classify_exception(response.error), 0
        if response.status_code != 200:
            return self.describe_error(response), 0
        try:
            result = self.parse_embeddings(parse_json(response.content), request.inputs)
        except BadBody as exc:
            return str(exc), 0
        run_id = self.assignment.plan.run_id if self.assignment else ""
        failure = check_embeddings(result, request.inputs, self._dimensions.get(run_id))
        if failure is not None:
            return failure, 0
        self._dimensions.setdefault(run_id, len(result.vectors[0]))
        tokens = (
            result.total_tokens
            if result.total_tokens is not None
            else request.inputs * request.passage_tokens
        )
        return None, tokens

    @staticmethod
    def _backoff(response: Any) -> float:
        """Seconds to wait before the next request: a rate-limited user must not hammer the server."""
        retry_after = retry_after_seconds(response.headers.get("Retry-After") if response.headers else None)
        if retry_after is not None:
            return min(retry_after, MAX_BACKOFF_S)
        return 1.0 if response.status_code == 429 else 0.0
