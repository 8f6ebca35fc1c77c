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
import time
from typing import Any, ClassVar

import gevent
from requests.auth import AuthBase

from locustfiles.checks import (
    BadBody,
    Embeddings,
    RequestFailure,
    backoff_seconds,
    check_embeddings,
    classify_exception,
    http_failure,
    parse_json,
    tokens_embedded,
)
from locustfiles.options import BenchOptions
from locustfiles.workload import PlannedRequest, UserAssignment, Workload

IDLE_WAIT_S = 1.0  # a user with nothing left to send in its cell waits in steps of this
PREPARE_WAIT_S = 600.0  # how long a user on a late-joining worker waits for the cell's payloads


class EmbeddingUser(HttpUser):
    """Abstract: one user of a cell. A backend implements ``encode_request``, ``request_path`` and
    ``parse_embeddings``, and may override ``request_headers``, ``request_auth`` and ``precheck``."""

    abstract = True

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

    # --- the user's life in a cell ---------------------------------------------------------------
    def wait_time(self) -> float:
        if self._pause_s:
            pause, self._pause_s = self._pause_s, 0.0
            return pause
        return 0.0 if self.assignment and self.assignment.requests else IDLE_WAIT_S

    def on_start(self) -> None:
        workload = Workload.of(self.environment)
        self.assignment = workload.take(type(self)) if workload else None
        # A worker that joined mid-cell gets users before its copy of the cell is prepared: wait.
        deadline = time.monotonic() + PREPARE_WAIT_S
        while self.assignment is None and workload is not None and time.monotonic() < deadline:
            gevent.sleep(IDLE_WAIT_S / 4)
            self.assignment = workload.take(type(self))
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
                self._pause_s = backoff_seconds(response.status_code, response.headers or {})

    def _outcome(self, response: Any, request: PlannedRequest) -> tuple[str | None, int]:
        if response.error is not None and response.status_code == 0:
            return classify_exception(response.error), 0
        if response.status_code != 200:
            return http_failure(response.status_code, response.headers, response.content), 0
        try:
            result = self.parse_embeddings(parse_json(response.content), request.inputs)
        except BadBody as exc:
            return str(exc), 0
        run_id = self.assignment.plan.run_id if self.assignment else ""
        failure = check_embeddings(result, request.inputs, self._dimensions.get(run_id))
        if failure is not None:
            return failure, 0
        self._dimensions.setdefault(run_id, len(result.vectors[0]))
        return None, tokens_embedded(result, request.inputs, request.passage_tokens)
