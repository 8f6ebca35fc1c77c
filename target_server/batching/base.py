"""What every batching mode shares: jobs, admission control, batch cutting and OOM-safe execution.

A request becomes a :class:`Job` holding one token-id list per input. Modes differ only in *when*
they run which inputs together (:meth:`Batcher._enqueue`); how a set of inputs is cut into forward
passes that fit the padded-token budget, how those passes are overlapped with host work on CUDA,
and how an out-of-memory error is survived, is common.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from target_server.batching.pass_cost import PassCost
from target_server.domain_errors import (
    ForwardPassFailed,
    InputTooLargeForDevice,
    Overloaded,
    ServiceError,
    TimedOut,
)
from target_server.metrics import ServerMetrics

log = logging.getLogger(__name__)


class Embedder(Protocol):
    """The batcher's view of the model (see target_server.embedder): one call, or three stages on CUDA."""

    asynchronous: bool
    # False when a pass computes on real tokens only (packed attention): budgets count real tokens.
    pads: bool

    def embed(self, batch: Sequence[Sequence[int]], task: str | None = None) -> np.ndarray: ...
    def stage(self, batch: Sequence[Sequence[int]]) -> Any: ...
    def launch(self, staged: Any, task: str | None = None) -> Any: ...
    def collect(self, flight: Any) -> np.ndarray: ...
    def release_memory(self) -> None: ...
    def is_out_of_memory(self, error: BaseException) -> bool:
        """Whether ``error`` from a pass is the device running out of memory (then: split)."""
        ...


@dataclass(eq=False)
class Job:
    """One request's inputs on their way through a batcher; request threads wait on :attr:`done`."""

    ids: list[list[int]]
    task: str | None
    tokens: int
    results: list[np.ndarray | None] = field(init=False)
    remaining: int = field(init=False)
    error: ServiceError | None = None
    cancelled: bool = False
    waiting_tokens: int = field(init=False)  # tokens of the inputs no forward pass has taken yet
    launched: list[bool] = field(init=False)
    enqueued_at: float = field(default_factory=time.perf_counter)
    started_at: float | None = None
    finished_at: float | None = None
    done: threading.Event = field(default_factory=threading.Event)
    trace: Any = None  # target_server.tracing.RequestTrace (or PassLinks) when traced: pass spans link it
    vectors: np.ndarray | None = None  # the answer (inputs x dims, input order), once waited for
    # Called once, on the thread that finished the job (the batcher's, or a timeout's), right after
    # ``done`` is set: how a model process answers front ends without a thread waiting per request.
    on_done: Callable[[Job], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False  # the last result or the error is in: finish exactly once

    def __post_init__(self) -> None:
        self.results = [None] * len(self.ids)
        self.remaining = len(self.ids)
        self.waiting_tokens = self.tokens
        self.launched = [False] * len(self.ids)

    @property
    def finished(self) -> bool:
        return self.done.is_set() or self.cancelled

    def entries(self) -> list[Entry]:
        return [Entry(self, index) for index in range(len(self.ids))]

    def mark_started(self, now: float, index: int) -> None:
        """Input ``index`` is in a forward pass from ``now`` on (the job's first input starts the job)."""
        with self._lock:
            if self.started_at is None:
                self.started_at = now
            if not self.launched[index]:
                self.launched[index] = True
                self.waiting_tokens -= len(self.ids[index])

    def complete(self, index: int, vector: np.ndarray) -> None:
        with self._lock:
            if self._closed or self.results[index] is not None:
                return
            self.results[index] = vector
            self.remaining -= 1
            last = self._closed = self.remaining == 0
        if last:
            self._finish()

    def fail(self, error: ServiceError) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.error = error
        self._finish()

    def _finish(self) -> None:
        self.finished_at = time.perf_counter()
        self.done.set()
        if self.on_done is not None:
            self.on_done(self)

    def answer(self) -> np.ndarray:
        """The float32 embeddings (inputs x dims) in input order of a finished job, or its error."""
        if self.error is not None:
            # A copy per request thread: the error is shared by every job of a failed batch, and
            # raising one object from several threads would chain their tracebacks together.
            raise dataclasses.replace(self.error)
        return np.stack(self.results)  # type: ignore[arg-type]

    def wait(self, timeout_s: float) -> np.ndarray:
        """The float32 embeddings (inputs x dims) in input order, or the job's error; never past ``timeout_s``."""
        if not self.done.wait(timeout_s):
            self.cancelled = True  # inputs not yet run are skipped by the batcher
            raise TimedOut.after(timeout_s)
        return self.answer()

    def timings_ms(self) -> tuple[float, float]:
        """(queue time, inference time): admission to first forward pass, first pass to last result."""
        started = self.started_at if self.started_at is not None else self.finished_at or self.enqueued_at
        finished = self.finished_at or started
        return (started - self.enqueued_at) * 1e3, (finished - started) * 1e3


@dataclass(frozen=True, eq=False)
class Entry:
    """One input of a job: the unit the batchers sort and cut."""

    job: Job
    index: int

    @property
    def ids(self) -> list[int]:
        return self.job.ids[self.index]

    @property
    def length(self) -> int:
        return len(self.job.ids[self.index])


def cut_batches(
    entries: Iterable[Entry],
    max_batch_tokens: int,
    split_cost_tokens: float = math.inf,
    *,
    padded: bool = True,
) -> list[list[Entry]]:
    """Cut entries, in the order given, into batches with ``longest x rows <= max_batch_tokens``.

    An embedder that packs its passes (``padded=False``: no padding computed) fills the budget with
    real tokens instead, and never splits for padding.

    Sorting by length before cutting (as the continuous batcher does) keeps padding small; an input
    longer than the budget alone still gets a batch of its own. With ``split_cost_tokens`` (what one
    more pass costs, in padded tokens: :mod:`.pass_cost`) a batch also ends before an input whose
    length would pad the batch's rows by more than that, ``(length - longest) x rows``: fed sorted
    inputs, each pass then holds inputs of like lengths, and a mix of lengths pads less.
    """
    batches: list[list[Entry]] = []
    current: list[Entry] = []
    longest = 0
    if not padded:
        tokens = 0
        for entry in entries:
            if current and tokens + entry.length > max_batch_tokens:
                batches.append(current)
                current, tokens = [], 0
            current.append(entry)
            tokens += entry.length
        return [*batches, current] if current else batches
    for entry in entries:
        widest = max(longest, entry.length)
        over_budget = widest * (len(current) + 1) > max_batch_tokens
        if current and (over_budget or (widest - longest) * len(current) > split_cost_tokens):
            batches.append(current)
            current, widest = [], entry.length
        current.append(entry)
        longest = widest
    if current:
        batches.append(current)
    return batches


def group_by_task(entries: Iterable[Entry]) -> dict[str | None, list[Entry]]:
    """Multi-task models run one adapter per forward pass, so inputs of different tasks never mix."""
    groups: dict[str | None, list[Entry]] = {}
    for entry in entries:
        groups.setdefault(entry.job.task, []).append(entry)
    return groups


@dataclass(eq=False)
class _Flight:
    """A pass queued on the device: its entries, the embedder's handle, when its device time began."""

    part: list[Entry]
    handle: Any
    started_at: float


@dataclass(frozen=True)
class _Failure:
    out_of_memory: bool
    kind: str
    message: str


def _attempt(
    out_of_memory: Callable[[BaseException], bool], step: Callable[..., Any], *args: Any
) -> tuple[Any, _Failure | None]:
    """Run one stage of a pass; an exception becomes a :class:`_Failure` that holds no traceback.

    Python unbinds the exception when its ``except`` block ends, so the frames of a failed forward
    pass (and the activations they hold) are gone before the cache is emptied and the halves run.
    """
    try:
        return step(*args), None
    except Exception as error:
        oom = out_of_memory(error)
        if not oom:
            log.exception("forward pass failed")
        first_line = next(iter(str(error).splitlines()), "")
        return None, _Failure(oom, type(error).__name__, first_line)


class Batcher(ABC):
    """Admission control plus OOM-safe execution; subclasses decide when inputs run."""

    mode: ClassVar[str]
    # target_server.tracing.ServerTracing when tracing is on: a span per forward pass (set by the service)
    tracing: Any = None

    def __init__(
        self,
        embedder: Embedder,
        metrics: ServerMetrics,
        *,
        max_batch_tokens: int,
        max_queue_tokens: int,
        batch_timeout_s: float = 0.0,
        request_timeout_s: float = 120.0,
    ) -> None:
        self.embedder = embedder
        self.metrics = metrics
        self.max_batch_tokens = max_batch_tokens
        self.max_queue_tokens = max_queue_tokens
        self.batch_timeout_s = batch_timeout_s
        self.request_timeout_s = request_timeout_s
        self._admission_lock = threading.Lock()
        self._in_flight_tokens = 0
        self._admitted: set[Job] = set()  # admitted and not yet answered (under the admission lock)
        self._tokens_per_s = 0.0  # moving average of forward-pass throughput, for Retry-After
        self.pass_cost = PassCost()  # a pass's fixed time in tokens, fitted to every pass's time
        metrics.gauge(
            "embed_in_flight_tokens", "Tokens admitted and not yet answered", lambda: self.in_flight_tokens
        )
        metrics.gauge("embed_queue_depth", "Inputs waiting for a forward pass", lambda: self.queue_depth())
        metrics.gauge(
            "embed_requests_in_flight", "Requests admitted and not yet answered", lambda: len(self._admitted)
        )
        metrics.gauge(
            "embed_queue_requests",
            "Requests admitted whose inputs no forward pass has taken yet",
            lambda: self.waiting()[0],
        )
        metrics.gauge(
            "embed_queue_tokens",
            "Tokens of the admitted inputs no forward pass has taken yet",
            lambda: self.waiting()[1],
        )

    # ---- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Start background threads, if the mode has any."""

    def stop(self) -> None:
        """Stop background threads, if the mode has any."""

    def alive(self) -> bool:
        return True

    def queue_depth(self) -> int:
        return 0

    def waiting(self) -> tuple[int, int]:
        """(requests, tokens) admitted and not yet taken by a forward pass, counted at scrape time
        from the jobs themselves, so the figures cannot drift whatever the mode or an error did."""
        with self._admission_lock:
            jobs = list(self._admitted)
        return sum(1 for job in jobs if job.started_at is None), sum(job.waiting_tokens for job in jobs)

    def warmup(self, batch: list[list[int]]) -> None:
        """Run one full-budget batch before serving, through the same OOM-safe path as real traffic."""
        job = Job(ids=batch, task=None, tokens=sum(map(len, batch)))
        started = time.perf_counter()
        splits = self.metrics.value("embed_oom_splits_total")
        self.execute([job.entries()])
        if job.error is not None:
            raise RuntimeError(f"warm-up failed: {job.error}")
        if self.metrics.value("embed_oom_splits_total") > splits:
            log.warning(
                "warm-up: a full batch of %d padded tokens ran out of memory and had to be split; "
                "every full batch will pay that retry: lower --max-batch-tokens",
                self.max_batch_tokens,
            )
        log.info(
            "warm-up: %d x %d tokens in %.2f s", len(batch), len(batch[0]), time.perf_counter() - started
        )

    def settle(self, batches: Sequence[tuple[str, list[list[int]]]], budget_s: float) -> None:
        """The warm-up's second part: run each batch again and again until its forward pass takes a
        steady time (``settled``), all within ``budget_s``; log each shape's first and last times."""
        deadline = time.perf_counter() + budget_s
        for label, batch in batches:

            def run_once(batch: list[list[int]] = batch) -> float:
                job = Job(ids=batch, task=None, tokens=sum(map(len, batch)))
                started = time.perf_counter()
                self.execute([job.entries()])
                if job.error is not None:
                    raise RuntimeError(f"warm-up failed: {job.error}")
                return time.perf_counter() - started

            times, steady = settled(run_once, deadline)
            recent = ", ".join(f"{t * 1000:.1f}" for t in times[-SETTLE_RUNS:])
            log.info(
                "warm-up %s: %s after %d pass(es): first %.1f ms, last %s ms",
                label,
                "latency settled" if steady else f"latency NOT settled within {budget_s:g} s",
                len(times),
                times[0] * 1000,
                recent,
            )
            if time.perf_counter() >= deadline:
                break

    # ---- admission --------------------------------------------------------------------------------
    @property
    def in_flight_tokens(self) -> int:
        return self._in_flight_tokens

    def retry_after_s(self) -> int:
        """Seconds until the backlog should have drained, from the measured throughput (1..60)."""
        if self._tokens_per_s <= 0:
            return 1
        return max(1, min(60, math.ceil(self._in_flight_tokens / self._tokens_per_s)))

    def submit(
        self,
        ids: list[list[int]],
        task: str | None = None,
        trace: Any = None,
        on_done: Callable[[Job], None] | None = None,
    ) -> Job:
        """Admit a request (or raise 429 at once) and hand it to the mode's scheduling; ``trace``:
        the request's trace, which the spans of the passes it joins link; ``on_done``: see Job."""
        tokens = sum(map(len, ids))
        with self._admission_lock:
            # An empty server admits anything, so one request larger than the limit is never starved.
            if self._in_flight_tokens and self._in_flight_tokens + tokens > self.max_queue_tokens:
                self.metrics.rejections.inc()
                raise Overloaded.retry_after(self.retry_after_s())
            self._in_flight_tokens += tokens
            job = Job(ids=ids, task=task, tokens=tokens, trace=trace, on_done=on_done)
            self._admitted.add(job)
        try:
            self._enqueue(job)
        except BaseException:
            self.release(job)
            raise
        return job

    def release(self, job: Job) -> None:
        """Called once a request is answered (or abandoned): its tokens leave the admission budget."""
        with self._admission_lock:
            if job not in self._admitted:  # released already: a job's tokens leave once
                return
            self._in_flight_tokens -= job.tokens
            self._admitted.discard(job)

    @abstractmethod
    def _enqueue(self, job: Job) -> None:
        """Schedule the job's inputs; results arrive through :meth:`execute`."""

    # ---- execution ----------------------------------------------------------------------------------
    def run_in_budget(
        self, entries: Sequence[Entry], *, sort: bool, split_cost_tokens: float = math.inf
    ) -> None:
        """Run entries (grouped by task, optionally length-sorted) as budget-sized forward passes,
        split by length where padding costs more than ``split_cost_tokens`` (see :func:`cut_batches`)."""
        batches: list[list[Entry]] = []
        for group in group_by_task(entries).values():
            if sort:
                group.sort(key=lambda entry: entry.length)
            batches += cut_batches(group, self.max_batch_tokens, split_cost_tokens, padded=self.embedder.pads)
        self.execute(batches)

    def execute(self, batches: Iterable[Sequence[Entry]]) -> None:
        """Run batches in order; on out-of-memory, free the cache, halve and retry; only a lone input fails.

        On CUDA (``embedder.asynchronous``) one pass is kept queued ahead: batch k+1 is padded, copied
        and launched while batch k still runs, and only then are k's results collected and handed
        out, so the device never waits for the host between passes. On the CPU each pass runs to
        its end before the next is padded. Errors are handled outside the ``except`` blocks (see
        :func:`_attempt`) so the tensors a failed pass held are released before the halves run.
        """
        todo: deque[list[Entry]] = deque(list(batch) for batch in batches)
        in_flight: _Flight | None = None
        while todo or in_flight is not None:
            part = [entry for entry in todo.popleft() if not entry.job.finished] if todo else []
            launched = self._launch(part, todo) if part else None
            if in_flight is not None:
                self._collect(in_flight, todo, after=launched)
            in_flight = launched

    def _launch(self, part: list[Entry], todo: deque[list[Entry]]) -> _Flight | None:
        """Start a pass: on CUDA stage and queue it, on the CPU run it whole. None if it failed."""
        started = time.perf_counter()
        for entry in part:
            entry.job.mark_started(started, entry.index)
        ids, task = [entry.ids for entry in part], part[0].job.task
        if not self.embedder.asynchronous:
            vectors, failure = _attempt(self.embedder.is_out_of_memory, self.embedder.embed, ids, task)
            if failure is None:
                self._record(part, vectors, time.perf_counter() - started)
            else:
                self._recover(part, failure, todo)
            return None
        staged, failure = _attempt(self.embedder.is_out_of_memory, self.embedder.stage, ids)
        flight = None
        if failure is None:
            flight, failure = _attempt(self.embedder.is_out_of_memory, self.embedder.launch, staged, task)
        del staged
        if failure is not None:
            self._recover(part, failure, todo)
            return None
        return _Flight(part, flight, started)

    def _collect(self, flight: _Flight, todo: deque[list[Entry]], after: _Flight | None) -> None:
        vectors, failure = _attempt(self.embedder.is_out_of_memory, self.embedder.collect, flight.handle)
        flight.handle = None
        finished = time.perf_counter()
        if after is not None:  # the next pass was queued behind this one: its device time starts now
            after.started_at = finished
        if failure is None:
            self._record(flight.part, vectors, finished - flight.started_at)
        else:
            self._recover(flight.part, failure, todo)

    def _recover(self, part: list[Entry], failure: _Failure, todo: deque[list[Entry]]) -> None:
        """After a failed pass: out-of-memory halves it (to run next), a lone input or any other error fails."""
        if not failure.out_of_memory:
            self._fail(part, ForwardPassFailed(f"forward pass failed: {failure.kind}"))
            return
        self.embedder.release_memory()
        if len(part) == 1:
            self.metrics.oom_failures.inc()
            log.warning("input of %d tokens does not fit even alone: %s", part[0].length, failure.message)
            self._fail(part, InputTooLargeForDevice.of(part[0].length, failure.message))
            return
        self.metrics.oom_splits.inc()
        half = len(part) // 2
        log.warning("out of memory on %d inputs; retrying as %d + %d", len(part), half, len(part) - half)
        todo.extendleft([part[half:], part[:half]])  # first half runs first

    def _record(self, part: Sequence[Entry], vectors: np.ndarray, seconds: float) -> None:
        tokens = sum(entry.length for entry in part)
        # What the pass computed on: a packed pass (embedder.pads False) pads nothing.
        padded = max(entry.length for entry in part) * len(part) if self.embedder.pads else tokens
        self.metrics.batch_size.observe(len(part))
        self.metrics.batch_tokens.observe(padded)
        self.metrics.batch_real_tokens.observe(tokens)
        self.metrics.batch_requests.observe(len({id(entry.job) for entry in part}))
        self.metrics.batch_seconds.observe(seconds)
        self.pass_cost.observe(padded, seconds)
        self.metrics.inputs.inc(len(part))
        self.metrics.tokens.inc(tokens)
        if seconds > 0:
            rate = tokens / seconds
            self._tokens_per_s = rate if self._tokens_per_s == 0 else 0.8 * self._tokens_per_s + 0.2 * rate
        if self.tracing is not None:  # before the results: a request answered knows its passes
            self.tracing.forward_pass(part, seconds)
        for entry, vector in zip(part, vectors, strict=True):
            entry.job.complete(entry.index, vector)

    @staticmethod
    def _fail(part: Sequence[Entry], error: ServiceError) -> None:
        for entry in part:
            entry.job.fail(error)


class ThreadedBatcher(Batcher):
    """A batcher with one device thread fed by a queue; the thread survives every error."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"{self.mode}-batcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while True:
            work: list[Entry] = []
            try:
                next_work = self._next_work()
                if next_work is None:
                    return
                work = next_work
                self._process(work)
            except Exception:
                log.exception("%s batcher: unexpected error", self.mode)
                self._fail(work, ForwardPassFailed("internal error in the batcher"))
            del work  # an idle thread holds no request's ids or results

    @abstractmethod
    def _next_work(self) -> list[Entry] | None:
        """Block until there is work; return the entries to run now, or None to stop."""

    def _process(self, entries: list[Entry]) -> None:
        self.run_in_budget(entries, sort=True)


SETTLE_RUNS = 3  # the last this many passes of a shape ...
SETTLE_RATIO = 1.25  # ... within this factor of each other: its latency has settled
SETTLE_MAX_PASSES = 40


def settled(
    run_once: Callable[[], float], deadline: float, clock: Callable[[], float] = time.perf_counter
) -> tuple[list[float], bool]:
    """Call ``run_once`` (it returns its duration) until the last ``SETTLE_RUNS`` durations lie within
    ``SETTLE_RATIO`` of each other, ``SETTLE_MAX_PASSES`` passes or the deadline; returns the
    durations and whether they settled."""
    times: list[float] = []
    while True:
        times.append(run_once())
        recent = times[-SETTLE_RUNS:]
        if len(recent) == SETTLE_RUNS and max(recent) <= SETTLE_RATIO * min(recent):
            return times, True
        if len(times) >= SETTLE_MAX_PASSES or clock() >= deadline:
            return times, False
