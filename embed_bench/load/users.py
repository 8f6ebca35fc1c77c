"""EmbeddingUser: the abstract Locust user that owns payloads, checks and naming for every backend.

A concrete backend only says how to encode a request body, where to send it (path, headers) and how
to read its response body; everything that makes the numbers comparable lives here:

- client: ``FastHttpUser`` (geventhttpclient), a few times cheaper per request than ``HttpUser``;
  ``--request-timeout`` bounds the connection, every read and the request as a whole;
- naming: measured requests are named after their cell (``b=32 t=512 c=5``), warm-ups ``warmup ...``;
- payloads: each user pops requests prepared before the cell started (``embed_bench.load.workload``); in
  a rate cell it takes the next due request from its process's dispatcher instead (open loop), and
  latency counts from the request's planned send time, in the record and in Locust's statistics;
- checks: a 200 must carry one finite vector per input, all of one dimension (the dimension of the
  first good response of this process), else it is a failure ``bad body: ...``;
- tokens: ``response_length`` is the client's count, batch x passage tokens (exact: payloads are
  token-exact), 0 for a failure, so Locust's "Average Content Size" reads as tokens per request and
  never credits a server's own count; the server's usage goes into the request record only;
- records: every request, sent or refused, becomes a ``RequestRecord`` (``embed_bench.core.records``) with
  its exact times, status, failure, bytes and the server's timing headers;
- credentials: the API key goes only to the backend's own host (``credential_default_host``), the
  host given at start, or the host a key entered in the web form was entered for
  (``embed_bench.load.credentials``); any other host gets requests without it;
- failures are named by class (``HTTP 429 RATE_TOKEN_LIMIT_EXCEEDED``, ``timeout``, ``connection
  refused``) and recorded once: no retries; after a 429, a Retry-After or a connection refused the
  user waits before its next request instead of storming the server (or spending a cell's requests
  in a millisecond while it restarts);
- bounds: ``--request-timeout`` bounds the whole request, body included, and a body is read only up
  to a size an embedding answer can have (``embed_bench.load.bodies``): a server that trickles a
  byte a second or answers 50 MB costs the load generator a timeout or a ``bad body: over N bytes``,
  never its memory or a user held forever;
- traces: with ``--otel`` or the OTEL_* variables, each measured request is a client span (cell, batch
  size, tokens, status, failure class) and carries its W3C ``traceparent`` (``embed_bench.load.tracing``);
  off, a request pays one ``None`` check.
"""

from __future__ import annotations

from locust import FastHttpUser, task  # first: gevent monkey-patches before anything else loads
from locust.contrib.fasthttp import FAILURE_EXCEPTIONS, LocustBadStatusCode
from locust.env import Environment

# isort: split
import itertools
import time
from typing import Any, ClassVar

import gevent

from embed_bench.core.checks import (
    BadBody,
    Embeddings,
    RequestFailure,
    backoff_seconds,
    check_embeddings,
    classify_exception,
    http_failure,
    parse_json,
)
from embed_bench.core.options import BenchOptions
from embed_bench.core.records import server_timings
from embed_bench.load import credentials, tracing
from embed_bench.load.bodies import RequestDeadline, body_limit, read_body
from embed_bench.load.recorder import RequestRecorder
from embed_bench.load.workload import PlannedRequest, RateRun, UserAssignment, Workload

IDLE_WAIT_S = 1.0  # a user with nothing left to send in its cell waits in steps of this
REFILL_BELOW, REFILL_COUNT = 4, 16  # a timed cell: top a user's queue up by 16 when 4 or fewer are left
PREPARE_WAIT_S = 600.0  # how long a user on a late-joining worker waits for the cell's payloads
ANY_STATUS = frozenset(range(100, 600))


class EmbeddingUser(FastHttpUser):
    """Abstract: one user of a cell. A backend implements ``encode_request``, ``request_path`` and
    ``parse_embeddings``, and may override ``request_headers`` and ``precheck``."""

    abstract = True
    insecure = False  # verify TLS certificates, as HttpUser did (FastHttpUser's default does not)
    # The backend's own host: its credentials may go there even when no host was given at start.
    credential_default_host: ClassVar[str | None] = None

    # Per run: the dimension of this process's first good response; every later one must match it.
    _dimensions: ClassVar[dict[str, int]] = {}
    _numbers: ClassVar[itertools.count] = itertools.count()  # the record's "user": unique per process

    def __init__(self, environment: Environment) -> None:
        options = BenchOptions.from_namespace(environment.parsed_options)
        # Read by FastHttpUser.__init__: the same bounds as requests' (connect, read) timeout.
        self.connection_timeout = self.network_timeout = options.request_timeout
        super().__init__(environment)
        # Every status is an answer to read: geventhttpclient closes the connection of a status it
        # deems invalid before its body is read, and a body that came in a later packet than the
        # headers (a server starting up, under load) would lose its error class ("HTTP 503" for
        # "HTTP 503 not_ready"). _outcome fails every status but 200 itself.
        self.client.client.valid_response_codes = ANY_STATUS
        self.options = options
        self.assignment: UserAssignment | None = None
        self.rate: RateRun | None = None  # a rate cell: due requests come from here
        self._rate_over = False
        self.number = next(EmbeddingUser._numbers)
        self.recorder = RequestRecorder.of(environment)
        self._pause_s = 0.0
        self._started_at = 0.0  # on_start: a timed cell without the master's start time ends from here
        self._refill: gevent.Greenlet | None = None  # a timed cell: more requests being built
        self._sent = 0  # requests of the current assignment sent so far: the record's "index"
        self._record_heads: dict[bool, tuple] = {}  # measured? -> the record's first fields
        self._headers: dict[str, str] | None = None
        self._tracer = tracing.tracer_of(environment)  # None unless tracing is on (tracing.py)

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

    def request_headers(self, body: bytes) -> dict[str, str]:
        """Headers of one request (SageMaker signs each body); the client copies them, so the same
        dict serves every request of this user. The key only where it is bound (module docstring)."""
        if self._headers is None:
            self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
            api_key = credentials.api_key_for(self.environment, self.host, self.credential_default_host)
            if api_key:
                self._headers["Authorization"] = f"Bearer {api_key}"
        return self._headers

    def precheck(self, request: PlannedRequest) -> str | None:
        """A failure message for a request that must not be sent at all (e.g. over a body limit)."""
        return None

    # --- the user's life in a cell ---------------------------------------------------------------
    def wait_time(self) -> float:
        if self._pause_s:
            pause, self._pause_s = self._pause_s, 0.0
            return pause
        if self.rate is not None:
            return IDLE_WAIT_S if self._rate_over else 0.0
        return 0.0 if self.assignment and self.assignment.requests else IDLE_WAIT_S

    def _take_work(self, workload: Workload | None) -> bool:
        if workload is not None and workload.rate is not None and workload.plan is workload.rate.plan:
            self.rate = workload.rate
            return True
        self.assignment = workload.take(type(self)) if workload else None
        return self.assignment is not None

    def on_start(self) -> None:
        workload = Workload.of(self.environment)
        # A worker that joined mid-cell gets users before its copy of the cell is prepared: wait.
        deadline = time.monotonic() + PREPARE_WAIT_S
        while not self._take_work(workload) and workload is not None and time.monotonic() < deadline:
            gevent.sleep(IDLE_WAIT_S / 4)
        if self.assignment is None and self.rate is None:
            raise RuntimeError(
                "no prepared cell: embed-bench users run under GridShape (embed_bench.load.shape)"
            )
        self._sent = 0
        self._started_at = time.time()
        self._refill = None
        if self.recorder is not None:
            plan = self.rate.plan if self.rate is not None else self.assignment.plan  # type: ignore[union-attr]
            repeat = getattr(plan, "repeat", 0)  # CellPlan.repeat arrives with embed-bench run --repeats
            head = (type(self).__name__, self.recorder.worker, self.number)
            self._record_heads = {
                measured: (plan.cell.name, repeat, 0 if measured else 1, *head) for measured in (True, False)
            }

    @task
    def embed(self) -> None:
        if self.rate is not None:
            self._send_when_due(self.rate)
            return
        if not self.assignment or not self.assignment.requests:
            return
        if self.assignment.plan.timed and not self._keep_sending(self.assignment):
            return
        request = self.assignment.requests.popleft()
        self.send(request)
        if request.measured and not self.assignment.requests:
            workload = Workload.of(self.environment)
            if workload is not None:
                workload.report_done(self.assignment.plan)

    def _keep_sending(self, assignment: UserAssignment) -> bool:
        """A timed cell (``-t`` without a grid): past its end, the user stops and says it is done;
        before it, the user's queue is topped up in the background so it never runs dry."""
        workload = Workload.of(self.environment)
        plan = assignment.plan
        ends_at = (workload.ends_at(plan) if workload else None) or self._started_at + plan.duration_s
        if time.time() >= ends_at:
            assignment.requests.clear()
            if workload is not None:
                workload.report_done(plan)
            return False
        if (
            workload is not None
            and len(assignment.requests) <= REFILL_BELOW
            and (self._refill is None or self._refill.dead)
        ):
            self._refill = gevent.spawn(workload.extend, assignment, type(self), REFILL_COUNT)
        if len(assignment.requests) <= 1 and self._refill is not None:
            self._refill.join()  # the last one queued: wait for more rather than end early
        return True

    def _send_when_due(self, rate: RateRun) -> None:
        """Open loop: wait for the next due request of this process's share and send it."""
        if self._rate_over:
            return
        due = rate.take()
        if due is None:
            self._rate_over = True
            return
        try:
            self.send(due.payload, planned_at=due.planned_at)
        finally:
            rate.answered()

    def send(self, request: PlannedRequest, planned_at: float | None = None) -> None:
        """Send one request and record it. ``planned_at`` (open loop): when it was due; its latency,
        here and in Locust's statistics, then counts from that time, not from the actual send."""
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
            now = time.time()
            self._record(request, planned_at or now, now, 0.0, 0, failure, None, 0, 0, None)
            if self._tracer is not None and request.measured:
                self._tracer.end(self._span(request), 0, failure)
            return
        # The whole request, body included, within --request-timeout (bodies.py: the client's own
        # timeout bounds each read, and a server trickling a byte a second never trips it).
        deadline = gevent.Timeout(self.options.request_timeout, RequestDeadline(self.options.request_timeout))
        deadline.start()
        try:
            self._post(request, planned_at, deadline)
        finally:
            deadline.close()

    def _span(self, request: PlannedRequest) -> Any:
        path = self.request_path()
        return self._tracer.start(  # type: ignore[union-attr]
            f"POST {path}",
            request.name,
            request.inputs,
            request.passage_tokens,
            request.tokens,
            f"{self.host}{path}",
        )

    def _post(self, request: PlannedRequest, planned_at: float | None, deadline: gevent.Timeout) -> None:
        headers = self.request_headers(request.body)
        span = None
        if self._tracer is not None and request.measured:  # a span and its traceparent (tracing.py)
            span = self._span(request)
            headers = self._tracer.headers(span, headers)
        with self.client.post(
            self.request_path(),
            data=request.body,
            headers=headers,
            name=request.name,
            catch_response=True,
            stream=True,  # the body is read here, within its bounds (bodies.py)
        ) as response:
            meta = response.request_meta
            body, failure = self._read_body(response, request)
            deadline.close()  # nothing below waits on the network
            received = len(body)
            tokens_server = None
            if failure is None:
                failure, tokens_server = self._outcome(response, request, body)
            if failure is None:
                meta["response_length"] = request.tokens
                response.success()
            else:
                meta["response_length"] = 0
                response.failure(RequestFailure(failure))
                self._pause_s = backoff_seconds(response.status_code, response.headers or {}, failure)
            sent_at = meta["start_time"]
            latency_from_sent_ms = meta["response_time"]
            if planned_at is not None:  # Locust fires the event on leaving this block: count the lag
                meta["response_time"] = latency_from_sent_ms + (sent_at - planned_at) * 1000.0
            self._record(
                request,
                sent_at if planned_at is None else planned_at,
                sent_at,
                latency_from_sent_ms,
                response.status_code,
                failure,
                tokens_server,
                len(request.body),
                received,
                response.headers,
            )
            if span is not None:
                lag_ms = 0.0 if planned_at is None else (sent_at - planned_at) * 1000.0
                self._tracer.end(span, response.status_code, failure, lag_ms)  # type: ignore[union-attr]

    def _record(
        self,
        request: PlannedRequest,
        planned_at: float,
        sent_at: float,
        latency_ms: float,
        status: int,
        failure: str | None,
        tokens_server: int | None,
        bytes_sent: int,
        bytes_received: int,
        headers: Any,
    ) -> None:
        """Keep the request's record, a plain tuple in ``RequestRecord`` order (a few microseconds).
        ``latency_ms`` is measured from ``sent_at``; the record's latency counts from ``planned_at``
        (closed loop: planned when sent, never late). The index is the request's place in its user's
        assignment (closed loop) or in its process's schedule (open loop)."""
        index, self._sent = self._sent, self._sent + 1
        if self.recorder is None:
            return
        if self.rate is not None:
            index = request.index
        completed_at = sent_at + latency_ms / 1000.0
        lag_ms = (sent_at - planned_at) * 1000.0
        self.recorder.keep(
            self._record_heads[request.measured]
            + (
                index,
                request.inputs,
                request.passage_tokens,
                request.tokens,
                tokens_server,
                status,
                0 if failure else 1,
                failure or "",
            )
            + (
                planned_at,
                sent_at,
                completed_at,
                latency_ms + lag_ms,
                lag_ms,
                0,
                bytes_sent,
                bytes_received,
            )
            + server_timings(headers)
        )

    def _read_body(self, response: Any, request: PlannedRequest) -> tuple[bytes, str | None]:
        """The body, read within its size limit and the request's deadline (``bodies.py``), and the
        failure that cut it short (None when it was read whole, or there was no response). Its
        reading time joins the latency: Locust's, with ``stream=True``, stops at the headers."""
        if response.status_code == 0:
            return b"", None  # no response: _outcome names the transport's failure
        started = time.perf_counter()
        body, failure = b"", None
        try:
            body = read_body(response, body_limit(request.inputs))
        except BadBody as exc:  # too large, or an encoding that does not decode
            if response.status_code == 200:
                failure = str(exc)  # else an error status: classified by its status alone
        except Exception as exc:  # the transport: a deadline, a reset, a body that broke off
            if not isinstance(exc, FAILURE_EXCEPTIONS):
                raise
            failure = classify_exception(exc)
        response.request_meta["response_time"] += (time.perf_counter() - started) * 1000.0
        return body, failure

    def _outcome(self, response: Any, request: PlannedRequest, body: bytes) -> tuple[str | None, int | None]:
        """The failure message (None on success) and the server's reported usage."""
        error = response.request_meta["exception"]
        if response.status_code == 0 or (error is not None and not isinstance(error, LocustBadStatusCode)):
            # No response, or one whose body broke off: the transport's failure class.
            return classify_exception(error or response.error), None
        if response.status_code != 200:
            failure = http_failure(response.status_code, response.headers, body)
            # A 404 is most often a wrong path (or host): name the path it was for.
            return (f"{failure} at {self.request_path()}" if response.status_code == 404 else failure), None
        try:
            result = self.parse_embeddings(parse_json(body), request.inputs)
        except BadBody as exc:
            return str(exc), None
        run_id = self.assignment.plan.run_id if self.assignment else ""
        failure = check_embeddings(result, request.inputs, self._dimensions.get(run_id))
        if failure is not None:
            return failure, None
        self._dimensions.setdefault(run_id, len(result.vectors[0]))
        return None, result.total_tokens
