"""GridShape: walks a grid's cells (concurrency x batch size x passage tokens) on the master.

Each cell runs in three steps:

1. announce: the cell's ``CellPlan`` goes to every load-generating process, which builds all of the
   cell's request bodies in the background (see ``embed_bench.load.workload``) and answers "ready";
   meanwhile the shape holds 0 users, so the previous cell's users are stopped and every cell starts
   with its own fresh users, however long its preparation takes;
2. run: once all processes are ready and no user is left (and, for a repeat of the same cell or
   after the first cell, its counts are in), the cell's start is recorded and
   ``concurrency`` users are spawned; each sends its warm-up and ``--requests-per-user`` measured
   requests, then reports "done" and idles;
3. end: when every user is done (end = the last "done") or ``--cell-max-seconds`` passed (end = now);
   the next cell is announced in the same tick.

A cell's outcome -- of its ``planned`` measured requests, how many ``completed`` (got a success or a
failure) and ``succeeded``, and its most frequent failures -- is the change in Locust's own statistics
for the cell's request name between its start and its end. A master receives its workers'
statistics every few seconds, so it takes the counts a report interval after the end, while the
next cell (of another name) already runs (``cells.must_await_counts``); the counts are logged
(``b=1 t=128 c=1: 0/5 ok, HTTP 404 (5)``) and written to ``cells.csv``. When every request of the first cell failed with a client error (HTTP 400, 401, 403,
404: a wrong path, key or request), the walk stops there: no other cell would fare better.

``--repeats N`` walks the grid N times; each repeat sends fresh passages and gets its own rows in
``cells.csv`` (Locust's own statistics merge the repeats of a cell, which share its request name).

After the last cell the shape holds zero users a few seconds more before it ends the test: Locust
writes its CSV files once a second and does not write them again at shutdown, and workers report
their statistics every few seconds, so ending at once could leave the last requests out of
``locust_stats.csv``.

Rate cells (``RateCell``, open loop) run the same three steps with ``--max-in-flight`` users: the
master sends the schedule's start time a moment ahead (``START_LEAD_S``) so every process starts
together, and the cell ends when every process reported its share over (all of it answered or
dropped). A ``[capacity]`` table or ``--grid capacity`` appends rate cells one at a time after the
grid's cells: each step's p95 and success come from the request records the master collects, feed
``embed_bench.core.capacity.CapacitySearch``, which proposes the next rate or stops; the answer goes to
``capacity.json`` in the run directory (``embed-bench run`` copies it into ``run.json``). Its
confirmation steps (at and around the answer, twice) run a rate already tried as a repeat of its cell.

``cells.csv`` in the run directory is rewritten at every start, end and count, and when the test
stops (an interrupted cell keeps an empty end and the counts it reached). The shape uses Locust's
common options: ``--users`` is the concurrency of the single cell run when no ``--grid`` is given, and
``--run-time`` bounds the whole walk; without a grid, ``--run-time`` is the single cell's duration
instead: its users start at ``--spawn-rate`` and each sends its warm-up, then measured requests one
after another until the time is up (a timed cell: ``planned`` is what they sent). Works the same on one process, with ``--processes`` and with a
master and workers, because the shape only talks to the processes through Locust's messages.
"""

from __future__ import annotations

from locust import LoadTestShape, events  # first: gevent monkey-patches before anything else loads
from locust.env import Environment
from locust.runners import WORKER_REPORT_INTERVAL, MasterRunner, Runner
from locust.stats import CSV_STATS_INTERVAL_SEC, RequestStats, StatsError

# isort: split
import logging
import random
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum

import gevent

from embed_bench.core.capacity_run import CapacityRun
from embed_bench.core.cells import (
    GRIDS,
    AnyCell,
    Cell,
    CellRecord,
    CellsCsv,
    Grid,
    GridError,
    RateCell,
    format_failures,
    grid_of,
    load_grid,
    must_await_counts,
    parse_grid_toml,
)
from embed_bench.core.options import (
    BenchOptions,
    OptionError,
    add_bench_options,
    concurrency_option,
    csv_prefix_option,
    resolve_run_dir,
    run_time_option,
)
from embed_bench.core.progress import (
    FINISHED,
    PREPARING,
    RUNNING,
    RunProgress,
    estimate_left_s,
    preparation_left_s,
    write_progress,
)
from embed_bench.load import credentials
from embed_bench.load.recorder import RequestRecorder
from embed_bench.load.workload import CellPlan, CellTracker, users_per_runner

__all__ = ["GRIDS", "Cell", "Grid", "GridError", "GridShape", "load_grid", "parse_grid_toml"]

logger = logging.getLogger(__name__)

# Every locustfile imports GridShape, so this is where the custom options join Locust's parser.
events.init_command_line_parser.add_listener(add_bench_options)

# Users stopped per second between cells: all of them in one of Locust's dispatch steps. At 100/s, a
# rate cell's 256 users took 2.6 s to stop, and the next cell waited for them.
STOP_RATE = 10_000.0
DRAIN_LIMIT_S = 30.0  # give up waiting for users to stop (a worker that vanished) after this long
PREPARE_LIMIT_S = 1800.0  # give up waiting for a worker to prepare a cell after this long
ASK_AGAIN_S = 5.0  # announce the cell again to a worker that has not answered for this long
START_LEAD_S = 1.0  # a rate cell's schedule starts this long after the master says so (users spawn)


CLIENT_ERRORS = re.compile(r"HTTP (400|401|403|404)\b")


class Phase(Enum):
    ANNOUNCE = "announce"
    PREPARING = "preparing"
    RUNNING = "running"
    SETTLING = "settling"


def spawn_rate(concurrency: int, rate_cell: bool = False) -> float:
    """Fast enough that a cell's users start within ~0.1 s; the warm-up absorbs the ramp. A rate
    cell's users all start within ``START_LEAD_S`` / 4, before its schedule does."""
    if rate_cell:
        return concurrency * 4.0 / START_LEAD_S
    return min(100.0, concurrency * 10.0)


def settle_seconds(runner: Runner) -> float:
    """How long the last statistics take to reach Locust's CSV files after the last request."""
    return count_delay_seconds(runner) + 2 * CSV_STATS_INTERVAL_SEC + 0.5


def count_delay_seconds(runner: Runner) -> float:
    """How long after a cell's end its last requests reach this runner's statistics."""
    return WORKER_REPORT_INTERVAL + 0.5 if isinstance(runner, MasterRunner) else 0.0


@dataclass(frozen=True)
class Tally:
    """Measured requests of one request name in Locust's statistics, and their failure classes."""

    requests: int = 0
    failures: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, stats: RequestStats, name: str) -> Tally:
        requests = sum(
            entry.num_requests for (entry_name, _), entry in stats.entries.items() if entry_name == name
        )
        failures: Counter[str] = Counter()
        for error in stats.errors.values():
            if error.name == name:
                failures[StatsError.parse_error(error.error)] += error.occurrences
        return cls(requests, failures)

    def __sub__(self, earlier: Tally) -> Tally:
        return Tally(self.requests - earlier.requests, self.failures - earlier.failures)


@dataclass
class Uncounted:
    """A cell that ended but whose counts are not final yet (a master awaits its workers' reports)."""

    record: CellRecord
    baseline: Tally
    due: float


def all_client_errors(record: CellRecord) -> bool:
    """Every planned request completed, none succeeded, and every failure is a client error."""
    return (
        bool(record.completed)
        and record.succeeded == 0
        and all(CLIENT_ERRORS.match(error) for error in record.failures)
    )


def request_options(environment: Environment, options: BenchOptions) -> BenchOptions:
    """The options the run's request bodies are built with. Each user class settles what it sends
    by default (``resolve_options``: ``JinaApiUser`` its model -- ``--model``, else the study's on the
    Jina API, else what the server lists, as ``embed-bench run --backend openai`` asks), once per run
    on the master, before the first cell; each cell's plan carries them to every process. Raises
    OptionError, naming the option to set, when a class cannot settle them."""
    for user_class in environment.user_classes:
        resolve = getattr(user_class, "resolve_options", None)
        if resolve is None:
            continue
        host = environment.host or getattr(user_class, "host", None)
        key = credentials.api_key_for(environment, host, getattr(user_class, "credential_default_host", None))
        options = resolve(options, host, key)
    return options


class GridWalk:
    """One run through a grid; GridShape starts a new walk for every new test start."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.greenlet = gevent.getcurrent()
        namespace = runner.environment.parsed_options
        self.options = BenchOptions.from_namespace(namespace)
        self.grid = grid_of(self.options, concurrency_option(namespace))
        self.options = request_options(runner.environment, self.options)  # after the grid's checks
        self.steps: list[tuple[int, AnyCell]] = [
            (repeat, cell) for repeat in range(self.options.repeats) for cell in self.grid.cells
        ]
        self.seed = (
            self.options.seed if self.options.seed is not None else random.SystemRandom().randrange(2**31)
        )
        self.run_id = uuid.uuid4().hex
        self.run_time = run_time_option(namespace)
        # Plain Locust's -t without a grid: the single closed-loop cell lasts -t, its users ramp up at
        # -r and send continuously (warm-up first) until then, instead of --requests-per-user each.
        self.timed = (
            self.run_time is not None
            and not self.options.grid
            and self.grid.capacity is None
            and len(self.grid.cells) == 1
            and isinstance(self.grid.cells[0], Cell)
        )
        self.spawn_rate = getattr(namespace, "spawn_rate", None)
        run_dir = resolve_run_dir(self.options, csv_prefix_option(namespace))
        self.run_dir = run_dir
        self.cells_csv = CellsCsv(run_dir) if run_dir is not None else None
        self.capacity: CapacityRun | None = None
        if self.grid.capacity is not None:
            self.capacity = CapacityRun(self.grid.capacity, run_dir)
            self.recorder = RequestRecorder.of(runner.environment)
            if self.recorder is None:
                raise GridError("a capacity search reads the request records, which are switched off")
            self.recorder.subscribe(self.capacity.on_rows)
            self._append_capacity_step()
        self.tracker = CellTracker.of(runner.environment)
        self.records: list[CellRecord] = []
        self.uncounted: list[Uncounted] = []
        self.counted_at_stop: list[Uncounted] = []  # counted as the test stopped: recounted at quit
        self.baseline = Tally()
        self.index = 0
        self.phase = Phase.ANNOUNCE
        self.phase_since = time.time()
        self.plan: CellPlan | None = None
        self.expected: set[str] = set()
        self.announced_at: dict[str, float] = {}
        self.started = time.monotonic()
        self.started_at = time.time()
        self.progress: RunProgress | None = None
        per_user = (
            f"{self.options.warmup_requests} warm-up request(s) per user, then measured ones until -t ends"
            if self.timed
            else f"{self.options.warmup_requests} warm-up + {self.options.requests_per_user} measured "
            "request(s) per user"
        )
        logger.info(
            "grid %s: %d cell(s)%s, %s, payload seed %d%s",
            self.grid.name,
            len(self.grid.cells),
            f" x {self.options.repeats} repeats" if self.options.repeats > 1 else "",
            per_user,
            self.seed,
            f", cells.csv in {run_dir}" if run_dir is not None else " (no run directory: no cells.csv)",
        )
        if self.timed:
            logger.info(
                "no --grid and -t %gs: cell %s runs for %g s; its %d user(s) start at %s user(s)/s and "
                "each sends %d warm-up(s), then measured requests one after another until the time is up",
                self.run_time,
                self.grid.cells[0].name,
                self.run_time,
                self.grid.cells[0].concurrency,
                f"{self.timed_spawn_rate():g}",
                self.options.warmup_requests,
            )
        logger.info(
            "Locust's statistics: 'Average size (bytes)' (response_length) holds tokens per request "
            "(batch x passage tokens, 0 for a failure), not bytes; rows named 'warmup ...' are warm-ups, "
            "and Locust's Aggregated row includes them (embed-bench's cells.csv, records and reports leave "
            "them out)"
        )

    def _append_capacity_step(self) -> None:
        assert self.capacity is not None
        cell = self.capacity.next_step()
        if cell is None:
            self.capacity.finish()
        else:
            self.steps.append((self.capacity.repeat, cell))  # a rate tried again runs as a repeat

    @property
    def cell(self) -> AnyCell:
        return self.steps[self.index][1]

    def users(self, cell: AnyCell) -> int:
        """A closed-loop cell's concurrency; a rate cell's --max-in-flight (at least one user per
        process, so every share has a sender)."""
        if isinstance(cell, RateCell):
            return max(self.options.max_in_flight, len(self.expected))
        return cell.concurrency

    def _spawn(self) -> tuple[int, float]:
        users = self.users(self.cell)
        if self.timed:
            return users, self.timed_spawn_rate()
        return users, spawn_rate(users, isinstance(self.cell, RateCell))

    def timed_spawn_rate(self) -> float:
        """A timed cell's users start at Locust's -r (a ramp is part of what -t covers), else at once."""
        try:
            rate = float(self.spawn_rate) if self.spawn_rate not in (None, "") else 0.0
        except (TypeError, ValueError):
            rate = 0.0
        return rate if rate > 0 else spawn_rate(self.users(self.cell))

    @property
    def step_label(self) -> str:
        repeat = self.steps[self.index][0]
        suffix = f", repeat {repeat + 1}/{self.options.repeats}" if self.options.repeats > 1 else ""
        return f"cell {self.index + 1}/{len(self.steps)} {self.cell.name}{suffix}"

    def tick(self) -> tuple[int, float] | None:
        now = time.time()
        # A timed cell is bounded by its own duration (its users stop); -t bounds any other walk.
        if not self.timed and self.run_time is not None and time.monotonic() - self.started > self.run_time:
            if self.phase is not Phase.SETTLING:
                logger.warning("--run-time reached: stopping the grid at cell %d", self.index + 1)
            return None
        if self.phase is Phase.RUNNING:
            self._welcome_late_workers()
            if not self._cell_finished(now):
                return self._spawn()
            # Announce the next cell right away: workers prepare it while the last users stop.
            self.index += 1
            self._enter(Phase.ANNOUNCE, now)
        stop = self._count(now)
        if self.phase is Phase.ANNOUNCE and self.index >= len(self.steps) and self._searching():
            return 0, STOP_RATE  # the capacity search's next step depends on the last one's counts
        walked = self.phase is Phase.ANNOUNCE and self.index >= len(self.steps)
        if self.phase is not Phase.SETTLING and (stop or walked):
            logger.info(
                "grid %s %s: %d cell(s)", self.grid.name, "stopped" if stop else "finished", len(self.records)
            )
            self._enter(Phase.SETTLING, now)
        if self.phase is Phase.SETTLING:
            if now - self.phase_since < settle_seconds(self.runner):
                return 0, STOP_RATE
            self.close()
            return None
        if self.phase is Phase.ANNOUNCE:
            if not self.tracker.load_generators():
                return 0, STOP_RATE  # a master without workers yet: Locust itself says so
            self._announce(now)
        return self._start_when_ready(time.time())

    def publish(self, now: float | None = None, finished: bool = False) -> RunProgress | None:
        """The walk's progress now (``embed_bench.core.progress``): kept for the web UI's tab on the
        tracker and written to the run directory's ``progress.json`` for ``embed-bench run``."""
        now = time.time() if now is None else now
        if self.plan is None or not self.steps:
            return None
        step = min(self.index, len(self.steps) - 1)
        repeat, cell = self.steps[step]
        common = {
            "step": step + 1,
            "steps": None if self.capacity is not None else len(self.steps),
            "cell": cell.name,
            "repeat": repeat,
            "run_started_at": self.started_at,
            "phase_started_at": self.phase_since,
            "updated_at": now,
            "processes": len(self.expected),
        }
        if finished or self.phase is Phase.SETTLING:
            progress = RunProgress(phase=FINISHED, **common)
        elif self.phase is Phase.PREPARING:
            processes = self.tracker.preparation(self.plan)
            complete = len(processes) >= len(self.expected)
            left = preparation_left_s(processes, len(self.expected))
            progress = RunProgress(
                phase=PREPARING,
                payloads_built=sum(process.built for process in processes.values()),
                payloads_planned=sum(process.planned for process in processes.values()) if complete else None,
                left_s=None if left is None else left - (now - max(p.updated_at for p in processes.values())),
                processes_reporting=len(processes),
                **common,
            )
        elif self.phase is Phase.RUNNING and self.records:
            record = self.records[-1]
            done = (Tally.of(self.runner.stats, cell.name) - self.baseline).requests
            planned = record.planned or None
            if isinstance(cell, RateCell):  # the schedule's end is known: no extrapolation
                left: float | None = max(0.0, record.start + cell.duration_s - now) or None
            elif self.timed:
                left, planned = max(0.0, record.start + self.plan.duration_s - now) or None, None
            else:
                left = estimate_left_s(done, planned, now - record.start)
            progress = RunProgress(
                phase=RUNNING,
                requests_done=done,
                requests_planned=planned,
                left_s=left,
                processes_reporting=len(self.expected),
                **{**common, "phase_started_at": record.start},
            )
        else:
            progress = RunProgress(phase=PREPARING, **common)
        self.progress = progress
        self.tracker.progress = progress
        if self.run_dir is not None:
            try:
                write_progress(self.run_dir, progress)
            except OSError as error:  # progress is a view: the run goes on without it
                logger.debug("progress.json not written: %s", error)
        return progress

    def _searching(self) -> bool:
        """A capacity search whose next step is not known yet (its last step is being counted)."""
        if self.capacity is None or self.capacity.finished:
            return False
        if not self.uncounted:  # nothing left to learn from: the search ends with what it has
            self.capacity.finish()
            return False
        return True

    def close(self) -> None:
        """The test stops (the walk's end, a stop, Ctrl-C): take every count there is, write them."""
        now = time.time()
        if self.phase is Phase.RUNNING and self.records and self.records[-1].completed is None:
            self.uncounted.append(Uncounted(self.records[-1], self.baseline, now))
        self.counted_at_stop = list(self.uncounted)
        self._count(now, final=True)
        if self.capacity is not None and not self.capacity.finished:
            self.capacity.finish()

    def recount(self) -> None:
        """Locust is quitting: count again what was counted as the test stopped. A master stops (and
        fires test_stop) before its workers' last reports: they send them only when told to quit,
        and the master waits for them after. A cell stopped mid-way (Ctrl-C) was counted short by
        their last seconds -- 597 of 846 requests in one run -- while its records held them all."""
        for item in self.counted_at_stop:
            tally = Tally.of(self.runner.stats, item.record.cell.name) - item.baseline
            self._apply(item.record, tally)
        if self.counted_at_stop:
            self._write()

    def _enter(self, phase: Phase, now: float) -> None:
        self.phase = phase
        self.phase_since = now

    def _announce(self, now: float) -> None:
        self.expected = self.tracker.load_generators()
        repeat, cell = self.steps[self.index]
        users = self.users(cell)
        common = {
            "run_id": self.run_id,
            "index": self.index,
            "concurrency": users,
            "users_per_runner": users_per_runner(users, len(self.expected)),
            "seed": self.seed,
            "options": self.options.public(),
            "repeat": repeat,
        }
        if isinstance(cell, RateCell):
            indexes = {node: number for number, node in enumerate(sorted(self.expected))}
            self.plan = CellPlan.of_rate_cell(cell, indexes, **common)
        else:
            duration = {"duration_s": self.run_time} if self.timed and self.run_time else {}
            self.plan = CellPlan(
                batch_size=cell.batch_size, passage_tokens=cell.passage_tokens, **duration, **common
            )
        logger.info("%s: preparing payloads", self.step_label)
        self.announced_at = dict.fromkeys(self.expected, now)
        self._enter(Phase.PREPARING, now)
        self.tracker.announce(self.plan)  # the processes prepare in the background

    def _welcome_late_workers(self) -> None:
        """Workers that connected after the cell was announced get it too: Locust hands them users
        (at the next spawn, or at once with --enable-rebalancing), who need a prepared cell. A worker
        that has not answered for a while is asked again: one that had just connected may have got
        the message before it could understand it (Locust connects a worker before its init event)."""
        assert self.plan is not None
        now = time.time()
        generators = self.tracker.load_generators()
        self._note_lost_workers(generators)
        late = generators - self.expected
        if late:
            logger.info(
                "cell %s: %d worker(s) joined; preparing the cell there too", self.cell.name, len(late)
            )
        silent = {
            node
            for node in (self.expected & generators) - set(self.tracker.ready(self.plan))
            if now - self.announced_at.get(node, now) > ASK_AGAIN_S
        }
        if late | silent:
            self.tracker.announce(self.plan, to=late | silent)
            self.announced_at.update(dict.fromkeys(late | silent, now))
            self.expected |= late

    def _note_lost_workers(self, generators: set[str]) -> None:
        """Workers that vanished (Locust marks a worker missing after 3 s without a heartbeat): while
        a cell runs, the cell records how many, since its users' requests are lost with them; the walk
        goes on with the others, which get the following cells."""
        gone = self.expected - generators
        if not gone:
            return
        self.expected -= gone
        if self.phase is Phase.RUNNING and self.records:
            record = self.records[-1]
            record.workers_lost += len(gone)
            self._write()
            logger.error(
                "cell %s: %d Locust worker(s) lost mid-cell (%s); their users' requests are lost, the run "
                "goes on with %d worker(s)",
                record.cell.name,
                len(gone),
                ", ".join(sorted(gone)),
                len(generators),
            )
        else:
            logger.warning(
                "%d Locust worker(s) lost between cells (%s); the run goes on with %d worker(s)",
                len(gone),
                ", ".join(sorted(gone)),
                len(generators),
            )

    def _start_when_ready(self, now: float) -> tuple[int, float] | None:
        """Start the announced cell once every process prepared it, the last cell's users stopped
        and its counts are final."""
        assert self.plan is not None
        self._welcome_late_workers()
        ready = self.tracker.ready(self.plan)
        errors = {node: error for node, error in ready.items() if error}
        if errors:
            logger.error("cell %s could not be prepared: %s", self.cell.name, "; ".join(errors.values()))
            self.runner.environment.process_exit_code = 1
            self.close()
            return None
        pending = (self.expected & self.tracker.load_generators()) - set(ready)
        draining = self.runner.user_count > 0 and now - self.phase_since < DRAIN_LIMIT_S
        if draining or self._awaiting_counts() or (pending and now - self.phase_since < PREPARE_LIMIT_S):
            return 0, STOP_RATE
        if self.runner.user_count > 0:
            logger.warning(
                "%s: %d user(s) of the last cell still counted after %.0f s; starting anyway",
                self.step_label,
                self.runner.user_count,
                DRAIN_LIMIT_S,
            )
        repeat, cell = self.steps[self.index]
        if isinstance(cell, RateCell):
            # The schedule starts a moment ahead, the same instant on every process; until the
            # processes report their shares, "planned" is the rate's expectation.
            start = now + START_LEAD_S
            self.tracker.start(self.plan, start)
            planned = cell.trace_rows or round(
                cell.request_rate * cell.duration_s
            ) - self.options.warmup_requests * len(self.plan.process_indexes)
            record = CellRecord(
                cell, start=start, repeat=repeat, planned=max(planned, 0), users=self.users(cell)
            )
        else:
            planned = 0 if self.timed else cell.concurrency * self.options.requests_per_user
            record = CellRecord(cell, start=now, repeat=repeat, planned=planned)
            if self.timed:  # every process ends the cell at the same instant: start + -t
                self.tracker.start(self.plan, now)
        self.records.append(record)
        self.baseline = Tally.of(self.runner.stats, cell.name)
        self._write()
        self._enter(Phase.RUNNING, now)
        prepared = self.tracker.preparation(self.plan)
        logger.info(
            "%s: running (%d payload(s) prepared in %.1f s)",
            self.step_label,
            sum(process.built for process in prepared.values()),
            max((process.updated_at - process.started_at for process in prepared.values()), default=0.0),
        )
        return self._spawn()

    def _awaiting_counts(self) -> bool:
        pending = [item.record for item in self.uncounted]
        return bool(pending) and must_await_counts(self.steps[self.index][1].name, pending, self.records[0])

    def _cell_finished(self, now: float) -> bool:
        assert self.plan is not None
        record = self.records[-1]
        done = self.tracker.done_times(self.plan)
        cell = self.cell
        if isinstance(cell, RateCell):
            finished = len(done) >= max(1, len(self.plan.process_indexes))
            limit = cell.duration_s + self.options.cell_max_seconds
        else:
            finished, limit = len(done) >= cell.concurrency, self.options.cell_max_seconds
            if self.timed:
                limit += self.plan.duration_s
        if not finished and record.workers_lost and done:
            finished = self._survivors_done(cell)
        if finished:
            record.end = max(record.start, max(done))  # a share with no arrival is done at once
            if isinstance(cell, RateCell):
                self._take_shares(record)
        elif now - record.start > limit:
            logger.warning(
                "cell %s: --cell-max-seconds (%.0f s) reached with %d of %d users (rate cells: processes) done",
                cell.name,
                limit,
                len(done),
                len(self.plan.process_indexes) if isinstance(cell, RateCell) else self.users(cell),
            )
            record.end = now
        else:
            return False
        self._write()
        logger.info("cell %s: done in %.2f s", self.cell.name, record.end - record.start)
        self.uncounted.append(Uncounted(record, self.baseline, now + count_delay_seconds(self.runner)))
        return True

    def _survivors_done(self, cell: AnyCell) -> bool:
        """After a worker was lost mid-cell: whether every process still alive is done (its users, a
        rate cell: its share), so the cell ends now rather than at --cell-max-seconds."""
        assert self.plan is not None
        alive = self.tracker.load_generators()
        done = self.tracker.done_by(self.plan, alive)
        if isinstance(cell, RateCell):
            return done >= len(alive & set(self.plan.process_indexes))
        return 0 < self.runner.user_count <= done

    def _take_shares(self, record: CellRecord) -> None:
        """A rate cell's planned (offered) and dropped measured requests, summed over the processes."""
        assert self.plan is not None
        details = self.tracker.done_details(self.plan)
        record.planned = sum(int(detail.get("offered", 0)) for detail in details)
        record.dropped = sum(int(detail.get("dropped", 0)) for detail in details)
        summaries = [detail["summary"] for detail in details if "summary" in detail]
        if summaries:
            logger.info(
                "cell %s: offered %.2f/s, achieved %.2f/s, dropped %d, send lag p99 %.1f ms (worst process)",
                record.cell.name,
                sum(summary["offered_rate_per_s"] for summary in summaries),
                sum(summary["achieved_rate_per_s"] for summary in summaries),
                sum(summary["dropped"] for summary in summaries),
                max(summary["lag_p99_ms"] for summary in summaries),
            )

    def _count(self, now: float, final: bool = False) -> bool:
        """Give every ended cell whose statistics are in its counts; True when the walk must stop
        because every request of the first cell failed with a client error."""
        due = [item for item in self.uncounted if final or item.due <= now]
        if not due:
            return False
        stop = False
        for item in due:
            self.uncounted.remove(item)
            record, tally = item.record, Tally.of(self.runner.stats, item.record.cell.name) - item.baseline
            self._apply(record, tally)
            log = logger.warning if record.succeeded < record.planned else logger.info
            log("cell %s: %s", record.cell.name, record.outcome())
            if self.capacity is not None and not self.capacity.finished:
                self.recorder.publish()  # the rows came with the same reports as the statistics
                measured = self.capacity.measured(
                    record.cell.name, record.repeat, record.start, record.planned
                )
                if measured and not stop:
                    self._append_capacity_step()
            if record is self.records[0] and all_client_errors(record) and len(self.steps) > 1:
                logger.error(
                    "every request of the first cell failed with a client error (%s): stopping the grid; "
                    "check --host, the endpoint path, the model name and the key or credentials",
                    format_failures(record.failures),
                )
                stop = True
        self._write()
        return stop

    def _apply(self, record: CellRecord, tally: Tally) -> None:
        """A cell's counts from its statistics."""
        record.completed = tally.requests
        if self.timed:  # as many as the users sent until the time was up
            record.planned = max(record.planned, tally.requests)
        record.succeeded = tally.requests - sum(tally.failures.values())
        record.failures = dict(tally.failures)

    def _write(self) -> None:
        if self.cells_csv is not None:
            self.cells_csv.write(self.records)


class GridShape(LoadTestShape):
    """The load shape of every embed-bench locustfile: the grid of ``--grid``, or a single cell."""

    use_common_options = True

    def __init__(self) -> None:
        super().__init__()
        self._walk: GridWalk | None = None
        self._listening = False

    def tick(self) -> tuple[int, float] | None:
        # Locust runs each test start in a new shape greenlet; a walk belongs to the greenlet it
        # started in, so a second run from the web UI starts again from the first cell.
        if self._walk is None or self._walk.greenlet is not gevent.getcurrent():
            assert self.runner is not None
            if not self._listening:
                self.runner.environment.events.test_stop.add_listener(self._on_test_stop)
                self.runner.environment.events.quitting.add_listener(self._on_quitting)
                self._listening = True
            try:
                self._walk = GridWalk(self.runner)
            except (GridError, OptionError) as exc:
                logger.error("cannot run the grid: %s", exc)
                self.runner.environment.process_exit_code = 2
                return None
        users = self._walk.tick()
        self._walk.publish()
        return users

    def _on_test_stop(self, **_kwargs: object) -> None:
        if self._walk is not None:
            self._walk.close()
            self._walk.publish(finished=True)

    def _on_quitting(self, **_kwargs: object) -> None:
        if self._walk is not None:
            self._walk.recount()
