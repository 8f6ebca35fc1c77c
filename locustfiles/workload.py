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
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar

import gevent

from locustfiles.cells import Cell
from locustfiles.options import BenchOptions
from locustfiles.payloads import PassageError, PassageFactory

logger = logging.getLogger(__name__)

CELL_MESSAGE = "embed-bench:cell"
READY_MESSAGE = "embed-bench:cell-ready"
DONE_MESSAGE = "embed-bench:user-done"
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

    @property
    def cell(self) -> Cell:
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
    index: int = 0  # the request's place in its user's assignment (warm-ups first)


@dataclass
class UserAssignment:
    """The requests one user sends in one cell: warm-ups first, then the measured ones."""

    plan: CellPlan
    requests: deque[PlannedRequest]


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
        runner.register_message(CELL_MESSAGE, self.on_cell)
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

    def prepare(self, plan: CellPlan) -> None:
        """Build every share of the cell; the new plan takes effect only once all of it is built."""
        started = time.perf_counter()
        assignments = {
            user_class.__name__: deque(
                self._build_assignment(plan, user_class, user) for user in range(plan.users_per_runner)
            )
            for user_class in self._encoders()
        }
        self.plan, self._assignments, self._built = plan, assignments, plan.users_per_runner
        logger.info(
            "prepared cell %s: %d user(s) x %d request(s) in %.1f s",
            plan.cell.name,
            plan.users_per_runner,
            self._requests_per_user(plan),
            time.perf_counter() - started,
        )

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

    def report_done(self, plan: CellPlan) -> None:
        self.runner.send_message(DONE_MESSAGE, {"run_id": plan.run_id, "index": plan.index})

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
        options = plan.bench_options()
        factory = self._factory(options.tokenizer, plan.seed)
        cell = plan.cell
        worker = getattr(self.runner, "worker_index", 0)
        requests: deque[PlannedRequest] = deque()
        for number in range(options.warmup_requests + options.requests_per_user):
            measured = number >= options.warmup_requests
            # The stream names the request's place in the run, so a seed reproduces the same passages
            # and every repeat of the grid gets fresh ones.
            stream = f"{cell.name}/p{plan.repeat}/w{worker}/u{user}/r{number}"
            body = _in_thread(_encode, factory, user_class, cell, stream, options)
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
        return UserAssignment(plan, requests)


def _encode(
    factory: PassageFactory, user_class: type[RequestEncoder], cell: Cell, stream: str, options: BenchOptions
) -> bytes:
    return user_class.encode_request(factory.passages(cell.batch_size, cell.passage_tokens, stream), options)


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
        runner.register_message(READY_MESSAGE, self.on_ready)
        runner.register_message(DONE_MESSAGE, self.on_done)
        CellTracker._instances[environment] = self

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
            self.runner.send_message(CELL_MESSAGE, asdict(plan))
            return
        for node in to:
            self.runner.send_message(CELL_MESSAGE, asdict(plan), client_id=node)

    def ready(self, plan: CellPlan) -> dict[str, str | None]:
        """node id -> error (None when the node prepared the cell)."""
        return self._ready.get(plan.key, {})

    def done_times(self, plan: CellPlan) -> list[float]:
        return self._done.get(plan.key, [])

    def on_ready(self, environment: Environment, msg: Message, **_kwargs: Any) -> None:
        key = (msg.data["run_id"], msg.data["index"])
        if key in self._ready:
            self._ready[key][msg.node_id] = msg.data.get("error")

    def on_done(self, environment: Environment, msg: Message, **_kwargs: Any) -> None:
        key = (msg.data["run_id"], msg.data["index"])
        if key in self._done:
            self._done[key].append(time.time())


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
