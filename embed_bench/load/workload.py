"""The requests of the current cell, prepared on every load-generating process before the cell starts.

Payload generation is CPU work (tokenizing up to 128 x 8192 tokens per request), and under gevent
CPU work in one user stalls every other user's clock. So GridShape (on the master) announces each
cell with a ``CellPlan`` message; every process that runs users (a worker, or the single local
process) builds all of that cell's request bodies, answers "ready", and only then does the master
record the cell's start and spawn its users, who just pop prepared requests. When a user has sent its
last measured request it reports "done"; the master ends the cell when all ``concurrency`` users have.

Preparation runs in its own greenlet and builds each request on gevent's thread pool (the tokenizer
releases the GIL), so however long it takes, it never holds up the shape's ticks, Locust's control
messages, heartbeats or a stop: on a local runner the message handler used to prepare inline, inside
the shape's tick, and a cell whose preparation outlasted the drain window started with the previous
cell's idle users instead of its own.

A rate cell (open loop, ``docs/open-loop.md``) is prepared the same way: each process plans its
share of the arrivals (``embed_bench.core.arrivals``, its own seeded stream, its index among the processes
from the plan) and builds a request per arrival, reusing a bounded pool of bodies per shape. When the
master starts the cell it sends the start time (``START_MESSAGE``), so every process releases its
schedule from the same instant (``embed_bench.load.open_loop.OpenLoopDispatcher``); the cell's users
(``--max-in-flight`` of them over all processes) take due requests from it. A process reports "done"
once its schedule is over and every request it released was answered or dropped.

Listeners are classes that subscribe in ``__init__``; the master side (``CellTracker``) is attached to
master and local runners, the worker side (``Workload``) to worker and local runners.
"""

from __future__ import annotations

import locust  # first: gevent monkey-patches before anything else loads
from locust.env import Environment
from locust.rpc import Message
from locust.runners import MasterRunner, Runner, WorkerRunner

# isort: split
import logging
import math
import random
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, TypeVar

import gevent
import gevent.event

from embed_bench.core.arrivals import Arrival, arrival_schedule, parse_mix
from embed_bench.core.arrivals import Shape as ArrivalShape
from embed_bench.core.cells import Cell
from embed_bench.core.checks import RequestFailure
from embed_bench.core.contract import RateCell, Shape
from embed_bench.core.lengths import LengthDistribution, parse_lengths
from embed_bench.core.options import BenchOptions
from embed_bench.core.payloads import PassageError, PassageFactory, count_tokens
from embed_bench.core.progress import ProcessPreparation, RunProgress
from embed_bench.core.trace import load_trace, replay_offsets, share_rows
from embed_bench.load.open_loop import Dropped, Due, OpenLoopDispatcher
from embed_bench.load.recorder import RequestRecorder

logger = logging.getLogger(__name__)

CELL_MESSAGE = "embed-bench:cell"
READY_MESSAGE = "embed-bench:cell-ready"
DONE_MESSAGE = "embed-bench:user-done"
START_MESSAGE = "embed-bench:cell-start"  # a rate cell's start time, so every process starts together
PROGRESS_MESSAGE = "embed-bench:cell-progress"  # bodies built of planned, while a cell is prepared
PROGRESS_INTERVAL_S = 1.0  # at most one progress message a second per process
POOL_TOKENS = 4_000_000  # distinct bodies kept per shape of a rate cell: at most this many tokens
LOCAL_NODE = "local"  # the node id LocalRunner.send_message gives its own messages

T = TypeVar("T")


class RequestEncoder(Protocol):
    """What a user class offers the workload: the backend's request body for a list of passages."""

    __name__: str

    @classmethod
    def encode_request(cls, passages: list[str], options: BenchOptions) -> bytes: ...


@dataclass(frozen=True)
class CellPlan:
    """Everything a process needs to prepare a cell; the options travel along because a worker only
    learns the master's options with the spawn message, which comes after preparation."""

    run_id: str
    index: int  # the cell's step in the walk, counted over all repeats: unique within a run
    batch_size: int
    passage_tokens: int
    concurrency: int
    users_per_runner: int
    seed: int
    options: dict[str, Any]  # BenchOptions.public(): never the API key
    repeat: int = 0  # which walk of the grid (--repeats): part of every passage's random stream
    # Rate cells only (request_rate set): concurrency is then --max-in-flight.
    request_rate: float | None = None
    duration_s: float = 0.0
    arrival: str = "poisson"
    shapes: tuple[tuple[int, int, float], ...] = ()  # (batch_size, passage_tokens, weight)
    label: str = "mix"
    process_indexes: dict[str, int] = field(default_factory=dict)  # node id -> its share's index
    lengths: tuple[dict[str, Any] | None, ...] = ()  # each shape's length distribution (None: fixed)
    trace: str = ""  # a replayed trace file: each process reads it for its share
    trace_rows: int = 0

    @property
    def timed(self) -> bool:
        """A closed-loop cell that lasts ``duration_s`` (plain Locust's ``-t`` without a grid): each
        user sends its warm-ups, then measured requests until the cell's time is up."""
        return self.request_rate is None and self.duration_s > 0

    @classmethod
    def of_rate_cell(cls, cell: RateCell, process_indexes: dict[str, int], **fields: Any) -> CellPlan:
        first = cell.shapes[0]
        return cls(
            batch_size=first.batch_size,
            passage_tokens=first.passage_tokens,
            request_rate=cell.request_rate,
            duration_s=cell.duration_s,
            arrival=cell.arrival,
            shapes=tuple((s.batch_size, s.passage_tokens, s.weight) for s in cell.shapes),
            label=cell.label,
            process_indexes=process_indexes,
            lengths=tuple(s.lengths.describe() if s.lengths else None for s in cell.shapes),
            trace=cell.trace,
            trace_rows=cell.trace_rows,
            **fields,
        )

    @property
    def cell(self) -> Cell | RateCell:
        if self.request_rate is not None:
            return RateCell(
                request_rate=self.request_rate,
                duration_s=self.duration_s,
                shapes=tuple(
                    Shape(int(b), int(t), float(w), parse_lengths(lengths) if lengths else None)
                    for (b, t, w), lengths in zip(
                        self.shapes, self.lengths or [None] * len(self.shapes), strict=True
                    )
                ),
                label=self.label,
                arrival=self.arrival,
                trace=self.trace,
                trace_rows=self.trace_rows,
            )
        return Cell(
            concurrency=self.concurrency, batch_size=self.batch_size, passage_tokens=self.passage_tokens
        )

    @property
    def key(self) -> tuple[str, int]:
        return (self.run_id, self.index)

    def bench_options(self) -> BenchOptions:
        return BenchOptions.from_mapping(self.options)


@dataclass(frozen=True)
class PlannedRequest:
    name: str
    body: bytes
    inputs: int
    passage_tokens: int
    measured: bool
    repeat: int = 0  # the plan's repeat, for the per-request records
    index: int = 0  # the request's place in its user's assignment (warm-ups first), or its trace row
    total_tokens: int = (
        0  # the request's tokens where passages differ in length (passage_tokens: the longest)
    )

    @property
    def tokens(self) -> int:
        """The tokens the request carries, as the client counted them."""
        return self.total_tokens or self.inputs * self.passage_tokens


@dataclass
class UserAssignment:
    """The requests one user sends in one cell: warm-ups first, then the measured ones. A timed cell
    (``CellPlan.timed``) gets more measured requests as it goes (``Workload.extend``)."""

    plan: CellPlan
    requests: deque[PlannedRequest]
    user: int = 0  # the user's share number in its process: part of every passage's stream
    built: int = 0  # requests built so far (warm-ups included): the next one's number


class RateRun:
    """This process's share of a rate cell: its planned requests, released by a dispatcher from the
    start time the master sends, taken by the cell's users; reports "done" when all are answered."""

    def __init__(
        self, workload: Workload, plan: CellPlan, arrivals: list[tuple[float, PlannedRequest]], backend: str
    ) -> None:
        self.workload, self.plan, self.backend = workload, plan, backend
        self.arrivals = arrivals
        self.options = plan.bench_options()
        self.dispatcher: OpenLoopDispatcher[PlannedRequest] | None = None
        self.started = gevent.event.Event()
        self.in_flight = 0
        self.exhausted = False
        self.reported = False
        self.dropped_measured = 0

    def start(self, start_at: float) -> None:
        if self.dispatcher is not None:
            return
        self.dispatcher = OpenLoopDispatcher(
            iter(self.arrivals),
            start_at=start_at,
            duration_s=self.plan.duration_s,
            max_lag_s=self.options.max_lag,
            on_drop=self._on_drop,
        )
        self.dispatcher.start()
        self.started.set()

    def take(self) -> Due[PlannedRequest] | None:
        """The next due request (blocks this user's greenlet); None once the share is over."""
        self.started.wait()
        assert self.dispatcher is not None
        due = self.dispatcher.take()
        if due is None:
            self.exhausted = True
            self._report_when_done()
        else:
            self.in_flight += 1
        return due

    def answered(self) -> None:
        self.in_flight -= 1
        self._report_when_done()

    def stop(self) -> None:
        """The cell was cut (or replaced): drop and record what is still queued."""
        if self.dispatcher is not None:
            self.dispatcher.stop()

    def _report_when_done(self) -> None:
        if self.exhausted and self.in_flight == 0 and not self.reported and self.dispatcher is not None:
            self.reported = True
            summary = self.dispatcher.summary()
            warmups = 0 if self.plan.trace else min(self.options.warmup_requests, summary.offered)
            logger.info(
                "rate cell %s: this process offered %d, sent %d, dropped %d, achieved %.2f/s, lag p99 %.1f ms",
                self.plan.cell.name,
                summary.offered,
                summary.sent,
                summary.dropped,
                summary.achieved_rate_per_s,
                summary.lag_p99_ms,
            )
            self.workload.report_done(
                self.plan,
                offered=summary.offered - warmups,
                dropped=self.dropped_measured,
                summary=asdict(summary),
            )

    def _on_drop(self, drop: Dropped[PlannedRequest]) -> None:
        """A dropped arrival is a failed request for Locust's statistics and a record with dropped=1."""
        request = drop.payload
        self.dropped_measured += request.measured
        failure = f"dropped: no free user within {self.options.max_lag:g} s"
        environment = self.workload.environment
        environment.events.request.fire(
            request_type="POST",
            name=request.name,
            response_time=(drop.dropped_at - drop.planned_at) * 1000.0,
            response_length=0,
            exception=RequestFailure(failure),
            context={},
        )

        recorder = RequestRecorder.of(environment)
        if recorder is None:
            return
        recorder.keep(
            (
                self.plan.cell.name,
                request.repeat,
                0 if request.measured else 1,
                self.backend,
                recorder.worker,
                None,
                request.index,
                request.inputs,
                request.passage_tokens,
                request.tokens,
                None,
                0,
                0,
                failure,
                drop.planned_at,
                None,
                None,
                None,
                None,
                1,
                0,
                0,
                None,
                None,
                None,
                None,
            )
        )


class PreparationReport:
    """Counts the bodies this process builds for a cell and tells the master (``PROGRESS_MESSAGE``)
    at most once per ``PROGRESS_INTERVAL_S``, and once more when all are built: the console and the
    web UI show a long preparation's progress from these counts."""

    def __init__(self, runner: Runner, plan: CellPlan, planned: int) -> None:
        self.runner, self.plan, self.planned = runner, plan, planned
        self.built = 0
        self.started_at = time.time()
        self._sent_at = 0.0
        self._send(self.started_at)

    def add(self, count: int = 1) -> None:
        self.built += count
        now = time.time()
        if now - self._sent_at >= PROGRESS_INTERVAL_S or self.built >= self.planned:
            self._send(now)

    def _send(self, now: float) -> None:
        self._sent_at = now
        state = ProcessPreparation(self.built, self.planned, self.started_at, now)
        self.runner.send_message(
            PROGRESS_MESSAGE, {"run_id": self.plan.run_id, "index": self.plan.index, **asdict(state)}
        )


class Workload:
    """Worker side: prepares each announced cell and hands every new user its share."""

    _instances: weakref.WeakKeyDictionary[Environment, Workload] = weakref.WeakKeyDictionary()

    def __init__(self, environment: Environment, runner: Runner) -> None:
        self.environment = environment
        self.runner = runner
        self.plan: CellPlan | None = None
        self._assignments: dict[str, deque[UserAssignment]] = {}
        self._built = 0
        self._factories: dict[tuple[str, int], PassageFactory] = {}
        self._preparing: gevent.Greenlet | None = None
        self._preparing_key: tuple[str, int] | None = None
        self._error: str | None = None
        self.rate: RateRun | None = None
        self._ends_at: dict[tuple[str, int], float] = {}  # a timed cell's end, from the master
        self._report: PreparationReport | None = None  # while a cell is prepared
        runner.register_message(CELL_MESSAGE, self.on_cell)
        runner.register_message(START_MESSAGE, self.on_start_cell)
        Workload._instances[environment] = self

    @classmethod
    def of(cls, environment: Environment) -> Workload | None:
        return cls._instances.get(environment)

    def on_cell(self, environment: Environment, msg: Message, **_kwargs: Any) -> None:
        """Start preparing in a greenlet of the runner's group (a quit kills it) and return at once;
        a newer cell replaces one still being prepared."""
        plan = CellPlan(**msg.data)
        if self._preparing_key == plan.key:  # the master asks again (its first message got lost)
            if self._preparing is not None and self._preparing.dead:
                self._answer(plan, self._error)
            return
        if self._preparing is not None and not self._preparing.dead:
            self._preparing.kill(block=False)
        self._preparing_key = plan.key
        self._preparing = self.runner.greenlet.spawn(self._prepare_and_answer, plan)

    def _prepare_and_answer(self, plan: CellPlan) -> None:
        error = None
        try:
            self.prepare(plan)
        except PassageError as exc:  # a tokenizer that cannot serve: the message says what to change
            logger.error("preparing cell %s failed: %s", plan.cell.name, exc)
            error = str(exc)
        except Exception as exc:  # reported to the master, which stops the run with the reason
            logger.exception("preparing cell %s failed", plan.cell.name)
            error = f"{type(exc).__name__}: {exc}"
        self._error = error
        self._answer(plan, error)

    def _answer(self, plan: CellPlan, error: str | None) -> None:
        self.runner.send_message(READY_MESSAGE, {"run_id": plan.run_id, "index": plan.index, "error": error})

    def on_start_cell(self, environment: Environment, msg: Message, **_kwargs: Any) -> None:
        key = (msg.data["run_id"], msg.data["index"])
        rate = self.rate
        if rate is not None and rate.plan.key == key:
            rate.start(float(msg.data["start_at"]))
        elif self.plan is not None and self.plan.key == key and self.plan.timed:
            self._ends_at = {key: float(msg.data["start_at"]) + self.plan.duration_s}

    def ends_at(self, plan: CellPlan) -> float | None:
        """When a timed cell ends (wall clock), once the master said when it started."""
        return self._ends_at.get(plan.key)

    def extend(self, assignment: UserAssignment, user_class: type[RequestEncoder], count: int) -> None:
        """``count`` more measured requests for a user of a timed cell, each with fresh passages from
        the stream of its number (so the same seed sends the same passages, and none repeats)."""
        assignment.requests.extend(self._build_requests(assignment, user_class, count))

    @property
    def node_id(self) -> str:
        return self.runner.client_id if isinstance(self.runner, WorkerRunner) else LOCAL_NODE

    def prepare(self, plan: CellPlan) -> None:
        """Build every share of the cell; the new plan takes effect only once all of it is built."""
        if plan.request_rate is not None:
            self._prepare_rate(plan)
            return
        started = time.perf_counter()
        encoders = self._encoders()
        planned = len(encoders) * plan.users_per_runner * self._requests_per_user(plan)
        self._report = PreparationReport(self.runner, plan, planned)
        try:
            assignments = {
                user_class.__name__: deque(
                    self._build_assignment(plan, user_class, user) for user in range(plan.users_per_runner)
                )
                for user_class in encoders
            }
        finally:
            self._report = None
        self._replace_rate(None)
        self.plan, self._assignments, self._built = plan, assignments, plan.users_per_runner
        logger.info(
            "prepared cell %s: %d user(s) x %d request(s) in %.1f s",
            plan.cell.name,
            plan.users_per_runner,
            self._requests_per_user(plan),
            time.perf_counter() - started,
        )

    def _replace_rate(self, rate: RateRun | None) -> None:
        if self.rate is not None:
            self.rate.stop()
        self.rate = rate

    def _prepare_rate(self, plan: CellPlan) -> None:
        """Plan this process's arrivals and build a request for each, from a bounded pool of bodies
        per shape (at most ``POOL_TOKENS`` tokens of distinct passages per shape)."""
        started = time.perf_counter()
        options = plan.bench_options()
        cell = plan.cell
        assert isinstance(cell, RateCell)
        index = plan.process_indexes.get(self.node_id)
        if index is None:
            logger.warning("rate cell %s: this process was not given a share; it sends nothing", cell.name)
        (encoder, *_) = self._encoders()
        if cell.trace:
            factory = self._factory(options.tokenizer, plan.seed)
            processes = max(1, len(plan.process_indexes))
            rows = len(share_rows(cell.trace_rows, processes, index)) if index is not None else 0
            report = PreparationReport(self.runner, plan, rows)  # built in one go: 0, then all
            arrivals = _in_thread(_trace_arrivals, plan, cell, index, factory, encoder, options)
            report.add(len(arrivals))
            pools: dict[ArrivalShape, list[Body]] = {}
        else:
            schedule = _share_schedule(plan, cell, index)
            pools = self._body_pools(plan, cell, index, schedule, encoder, options)
            arrivals = _planned_arrivals(plan, cell, schedule, pools, options.warmup_requests)
        self._replace_rate(RateRun(self, plan, arrivals, encoder.__name__))
        self.plan, self._assignments, self._built = plan, {}, 0
        logger.info(
            "prepared rate cell %s: share %s of %d process(es), %d arrival(s), %d distinct bodies in %.1f s",
            cell.name,
            index,
            len(plan.process_indexes),
            len(arrivals),
            sum(map(len, pools.values())) if pools else len(arrivals),
            time.perf_counter() - started,
        )

    def _body_pools(
        self,
        plan: CellPlan,
        cell: RateCell,
        index: int | None,
        schedule: Sequence[Arrival],
        encoder: type[RequestEncoder],
        options: BenchOptions,
    ) -> dict[ArrivalShape, list[Body]]:
        """The distinct request bodies of each shape the schedule uses, built on gevent's thread pool.

        A body per arrival would make preparation (and memory) grow with the rate times the duration;
        a pool of at most ``POOL_TOKENS`` tokens per shape bounds both, and arrivals reuse its bodies
        in turn. Each body's passages come from their own stream (cell, shape, repeat, share, number),
        so the shares of two processes and two repeats draw different passages. A shape of variable
        lengths draws each body's passage lengths from that stream too."""
        factory = self._factory(options.tokenizer, plan.seed)
        counts = Counter(arrival.shape for arrival in schedule)
        lengths = {(shape.batch_size, shape.passage_tokens): shape.lengths for shape in cell.shapes}
        sizes = {
            shape: min(count, max(1, POOL_TOKENS // shape.nominal_tokens)) for shape, count in counts.items()
        }
        report = PreparationReport(self.runner, plan, sum(sizes.values()))
        pools: dict[ArrivalShape, list[Body]] = {}
        for shape, size in sizes.items():
            pool = pools.setdefault(shape, [])
            for number in range(size):
                pool.append(
                    _in_thread(
                        _encode,
                        factory,
                        encoder,
                        shape.batch_size,
                        lengths.get((shape.batch_size, shape.passage_tokens)) or shape.passage_tokens,
                        f"{cell.name}/{shape.name}/p{plan.repeat}/w{index}/n{number}",
                        options,
                    )
                )
                report.add()
        return pools

    def take(self, user_class: type) -> UserAssignment | None:
        """The next unclaimed share of the current cell; built on the spot (and logged) if this
        process got more users than planned, which only an uneven dispatch can cause."""
        if self.plan is None:
            return None
        queue = self._assignments.setdefault(user_class.__name__, deque())
        if queue:
            return queue.popleft()
        logger.warning("cell %s: more users than prepared; building a share now", self.plan.cell.name)
        self._built += 1
        return self._build_assignment(self.plan, user_class, self._built - 1)

    def report_done(self, plan: CellPlan, **details: Any) -> None:
        """A closed-loop user sent its share; or (``details``: offered, dropped, summary) this
        process's share of a rate cell is over."""
        self.runner.send_message(DONE_MESSAGE, {"run_id": plan.run_id, "index": plan.index, **details})

    def _encoders(self) -> list[type[RequestEncoder]]:
        return [cls for cls in self.environment.user_classes if hasattr(cls, "encode_request")]

    def _factory(self, tokenizer: str, seed: int) -> PassageFactory:
        key = (tokenizer, seed)
        if key not in self._factories:
            self._factories[key] = _in_thread(PassageFactory, tokenizer, seed)
        return self._factories[key]

    @staticmethod
    def _requests_per_user(plan: CellPlan) -> int:
        options = plan.bench_options()
        return options.warmup_requests + options.requests_per_user

    def _build_assignment(
        self, plan: CellPlan, user_class: type[RequestEncoder], user: int
    ) -> UserAssignment:
        assignment = UserAssignment(plan, deque(), user=user)
        options = plan.bench_options()
        assignment.requests.extend(
            self._build_requests(assignment, user_class, options.warmup_requests + options.requests_per_user)
        )
        return assignment

    def _build_requests(
        self, assignment: UserAssignment, user_class: type[RequestEncoder], count: int
    ) -> list[PlannedRequest]:
        plan = assignment.plan
        options = plan.bench_options()
        factory = self._factory(options.tokenizer, plan.seed)
        cell = plan.cell
        worker = getattr(self.runner, "worker_index", 0)
        requests = []
        for number in range(assignment.built, assignment.built + count):
            measured = number >= options.warmup_requests
            # The stream names the request's place in the run, so a seed reproduces the same passages
            # and every repeat of the grid gets fresh ones.
            stream = f"{cell.name}/p{plan.repeat}/w{worker}/u{assignment.user}/r{number}"
            body = _in_thread(
                _encode, factory, user_class, cell.batch_size, cell.passage_tokens, stream, options
            ).data
            if self._report is not None and self._report.plan is plan:
                self._report.add()
            requests.append(
                PlannedRequest(
                    name=cell.name if measured else cell.warmup_name,
                    body=body,
                    inputs=cell.batch_size,
                    passage_tokens=cell.passage_tokens,
                    measured=measured,
                    repeat=plan.repeat,
                    index=number,
                )
            )
        assignment.built += count
        return requests


def _share_schedule(plan: CellPlan, cell: RateCell, index: int | None) -> list[Arrival]:
    """This process's arrivals of a rate cell (none without a share), in time order.

    The stream is seeded by the run's seed and the cell's step, so a cell prepared again (the master
    asked twice) plans the same requests, and every share draws its own stream. The mix is parsed
    (and so checked) even for a process without a share."""
    mix = parse_mix(
        [{"batch_size": b, "passage_tokens": t, "weight": w} for b, t, w in plan.shapes], where=cell.name
    )
    if index is None:
        return []
    return list(
        arrival_schedule(
            cell.request_rate,
            cell.duration_s,
            mix,
            arrival=cell.arrival,
            processes=max(1, len(plan.process_indexes)),
            process_index=index,
            seed=plan.seed * 1009 + plan.index,
        )
    )


def _planned_arrivals(
    plan: CellPlan,
    cell: RateCell,
    schedule: Sequence[Arrival],
    pools: dict[ArrivalShape, list[Body]],
    warmup_requests: int,
) -> list[tuple[float, PlannedRequest]]:
    """Each arrival's due offset and request: its shape's pool bodies in turn, the first
    ``warmup_requests`` of this share under the cell's warm-up name, so they stay out of the
    measured figures."""
    used: Counter = Counter()
    arrivals = []
    for number, arrival in enumerate(schedule):
        shape, measured = arrival.shape, number >= warmup_requests
        pool = pools[shape]
        body = pool[used[shape] % len(pool)]
        used[shape] += 1
        arrivals.append((arrival.offset_s, body.request(cell, measured, plan.repeat, number)))
    return arrivals


def _trace_arrivals(
    plan: CellPlan,
    cell: RateCell,
    index: int | None,
    factory: PassageFactory,
    encoder: type[RequestEncoder],
    options: BenchOptions,
) -> list[tuple[float, PlannedRequest]]:
    """This process's rows of a replayed trace (every N-th), each due at its replay offset, each with
    its own body: passages token-exact at the row's lengths, or the row's texts verbatim (counted
    with the run's tokenizer). Every row is measured: ``--warmup-requests`` does not apply to the
    team's own traffic. The record's index is the row's place in the trace."""
    if index is None:
        return []
    trace = load_trace(cell.trace)
    offsets = replay_offsets(trace, options.trace_speed, options.trace_max_gap)
    arrivals = []
    for row in share_rows(len(trace), max(1, len(plan.process_indexes)), index):
        request = trace.requests[row]
        if request.texts:
            texts = list(request.texts)
            lengths = count_tokens(factory.tokenizer, texts)
        else:
            lengths = list(request.lengths)
            texts = factory.passages_of(lengths, f"{cell.name}/trace/p{plan.repeat}/row{row}")
        body = Body(encoder.encode_request(texts, options), len(lengths), max(lengths), sum(lengths))
        arrivals.append((offsets[row], body.request(cell, True, plan.repeat, row)))
    return arrivals


@dataclass(frozen=True)
class Body:
    """A prepared request body and what it carries: ``inputs`` passages, the longest of
    ``longest`` tokens, ``tokens`` in all."""

    data: bytes
    inputs: int
    longest: int
    tokens: int

    def request(self, cell: RateCell, measured: bool, repeat: int, index: int) -> PlannedRequest:
        return PlannedRequest(
            name=cell.name if measured else cell.warmup_name,
            body=self.data,
            inputs=self.inputs,
            passage_tokens=self.longest,
            measured=measured,
            repeat=repeat,
            index=index,
            total_tokens=self.tokens,
        )


def _encode(
    factory: PassageFactory,
    user_class: type[RequestEncoder],
    batch_size: int,
    lengths: int | LengthDistribution,
    stream: str,
    options: BenchOptions,
) -> Body:
    """A body of ``batch_size`` passages of ``lengths`` tokens each, or of lengths drawn (from the
    stream's own random stream) from a distribution."""
    if isinstance(lengths, int):
        drawn = [lengths] * batch_size
    else:
        drawn = list(lengths.draw(random.Random(f"{factory.seed}/{stream}/lengths"), batch_size))
    data = user_class.encode_request(factory.passages_of(drawn, stream), options)
    return Body(data, batch_size, max(drawn), sum(drawn))


def _in_thread(function: Callable[..., T], *args: Any) -> T:
    """Run CPU work on gevent's thread pool: this greenlet waits, the hub (users' clocks, heartbeats,
    messages, signals) keeps running. A killed greenlet abandons the call; the thread finishes it."""
    return gevent.get_hub().threadpool.apply(function, args)


class CellTracker:
    """Master side: announces cells and counts the workers' "ready" and the users' "done" messages."""

    _instances: weakref.WeakKeyDictionary[Environment, CellTracker] = weakref.WeakKeyDictionary()

    def __init__(self, environment: Environment, runner: Runner) -> None:
        self.runner = runner
        self._ready: dict[tuple[str, int], dict[str, str | None]] = {}
        self._done: dict[tuple[str, int], list[float]] = {}
        self._done_nodes: dict[tuple[str, int], list[str]] = {}  # who sent each "done", in order
        self._done_details: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._preparation: dict[tuple[str, int], dict[str, ProcessPreparation]] = {}
        self.progress: RunProgress | None = None  # the grid walker's latest, for the web UI's tab
        runner.register_message(READY_MESSAGE, self.on_ready)
        runner.register_message(PROGRESS_MESSAGE, self.on_progress)
        runner.register_message(DONE_MESSAGE, self.on_done)
        CellTracker._instances[environment] = self

    @classmethod
    def find(cls, environment: Environment) -> CellTracker | None:
        return cls._instances.get(environment)

    @classmethod
    def of(cls, environment: Environment) -> CellTracker:
        tracker = cls._instances.get(environment)
        if tracker is None:
            raise RuntimeError("embed-bench listeners are not attached: fire environment.events.init first")
        return tracker

    def load_generators(self) -> set[str]:
        """Ids of the processes that will run users: the connected workers, or this local process."""
        if isinstance(self.runner, MasterRunner):
            clients = self.runner.clients
            return {node.id for node in [*clients.ready, *clients.spawning, *clients.running]}
        return {LOCAL_NODE}

    def announce(self, plan: CellPlan, to: Iterable[str] | None = None) -> None:
        """Broadcast a new cell; or, with ``to``, send the current one to workers that connected
        after the broadcast (``docker compose --scale``, a restarted pod), whose answers count too."""
        if to is None:
            self._ready[plan.key] = {}
            self._done[plan.key] = []
            self._done_nodes[plan.key] = []
            self._done_details[plan.key] = []
            self._preparation[plan.key] = {}
            self.runner.send_message(CELL_MESSAGE, asdict(plan))
            return
        for node in to:
            self.runner.send_message(CELL_MESSAGE, asdict(plan), client_id=node)

    def ready(self, plan: CellPlan) -> dict[str, str | None]:
        """node id -> error (None when the node prepared the cell)."""
        return self._ready.get(plan.key, {})

    def start(self, plan: CellPlan, start_at: float) -> None:
        """Tell every process when a rate cell's schedule starts (wall clock)."""
        self.runner.send_message(
            START_MESSAGE, {"run_id": plan.run_id, "index": plan.index, "start_at": start_at}
        )

    def done_times(self, plan: CellPlan) -> list[float]:
        return self._done.get(plan.key, [])

    def done_by(self, plan: CellPlan, nodes: set[str]) -> int:
        """How many "done" messages of the cell came from these processes (the ones still alive)."""
        return sum(1 for node in self._done_nodes.get(plan.key, []) if node in nodes)

    def done_details(self, plan: CellPlan) -> list[dict[str, Any]]:
        """What the processes reported with "done" for a rate cell (offered, dropped, summary)."""
        return self._done_details.get(plan.key, [])

    def preparation(self, plan: CellPlan) -> dict[str, ProcessPreparation]:
        """node id -> its last reported preparation of the cell (bodies built of planned)."""
        return self._preparation.get(plan.key, {})

    def on_progress(self, environment: Environment, msg: Message, **_kwargs: Any) -> None:
        key = (msg.data["run_id"], msg.data["index"])
        if key in self._preparation:
            data = msg.data
            self._preparation[key][msg.node_id] = ProcessPreparation(
                int(data["built"]), int(data["planned"]), float(data["started_at"]), float(data["updated_at"])
            )

    def on_ready(self, environment: Environment, msg: Message, **_kwargs: Any) -> None:
        key = (msg.data["run_id"], msg.data["index"])
        if key in self._ready:
            self._ready[key][msg.node_id] = msg.data.get("error")

    def on_done(self, environment: Environment, msg: Message, **_kwargs: Any) -> None:
        key = (msg.data["run_id"], msg.data["index"])
        if key in self._done:
            self._done[key].append(time.time())
            self._done_nodes[key].append(msg.node_id)
            details = {k: v for k, v in msg.data.items() if k not in ("run_id", "index")}
            if details:
                self._done_details[key].append(details)


def users_per_runner(concurrency: int, runners: int) -> int:
    """Locust's dispatcher spreads users round-robin, so no process gets more than this share."""
    return math.ceil(concurrency / max(1, runners))


def attach(environment: Environment, runner: Runner | None) -> None:
    """Attach the listeners this runner's role needs (a local runner plays both roles)."""
    if runner is None or CellTracker._instances.get(environment) or Workload.of(environment):
        return
    if not isinstance(runner, WorkerRunner):
        CellTracker(environment, runner)
    if not isinstance(runner, MasterRunner):
        Workload(environment, runner)


@locust.events.init.add_listener
def _attach_on_init(environment: Environment, runner: Runner | None = None, **_kwargs: Any) -> None:
    attach(environment, runner)
