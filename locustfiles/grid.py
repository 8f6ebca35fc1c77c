"""GridShape: walks a grid's cells (concurrency x batch size x passage tokens) on the master.

Each cell runs in three steps, one shape tick (about a second) apart:

1. announce: the cell's ``CellPlan`` goes to every load-generating process, which builds all of the
   cell's request bodies (see ``locustfiles.workload``) and answers "ready"; meanwhile the previous
   cell's users are stopped (a tick of 0 users), so every cell starts from a clean slate, even one
   with the same concurrency;
2. run: once all processes are ready and no user is left, the cell's start is recorded and
   ``concurrency`` users are spawned; each sends its warm-up and ``--requests-per-user`` measured
   requests, then reports "done" and idles;
3. end: when every user is done (end = the last "done") or ``--cell-max-seconds`` passed (end = now);
   the next cell is announced in the same tick.

After the last cell the shape holds zero users a few seconds more before it ends the test: Locust
writes its CSV files once a second and does not write them again at shutdown, and workers report
their statistics every few seconds, so ending at once could leave the last requests out of
``locust_stats.csv``.

``cells.csv`` in the run directory is rewritten at every start and end. The shape uses Locust's
common options: ``--users`` is the concurrency of the single cell run when no ``--grid`` is given, and
``--run-time`` bounds the whole walk. Works the same on one process, with ``--processes`` and with a
master and workers, because the shape only talks to the processes through Locust's messages.
"""

from __future__ import annotations

from locust import LoadTestShape, events  # first: gevent monkey-patches before anything else loads
from locust.runners import WORKER_REPORT_INTERVAL, MasterRunner, Runner
from locust.stats import CSV_STATS_INTERVAL_SEC

# isort: split
import logging
import random
import time
import uuid
from enum import Enum
from pathlib import Path

import gevent

from locustfiles.cells import (
    GRIDS,
    Cell,
    CellRecord,
    CellsCsv,
    Grid,
    GridError,
    load_grid,
    parse_grid_toml,
    single_cell_grid,
)
from locustfiles.options import (
    BenchOptions,
    OptionError,
    add_bench_options,
    concurrency_option,
    csv_prefix_option,
    run_time_option,
)
from locustfiles.workload import CellPlan, CellTracker, users_per_runner

__all__ = ["GRIDS", "Cell", "Grid", "GridError", "GridShape", "load_grid", "parse_grid_toml"]

logger = logging.getLogger(__name__)

# Every locustfile imports GridShape, so this is where the custom options join Locust's parser.
events.init_command_line_parser.add_listener(add_bench_options)

STOP_RATE = 100.0  # users stopped per second between cells (Locust ramps down at the spawn rate too)
DRAIN_LIMIT_S = 30.0  # give up waiting for users to stop (a worker that vanished) after this long
PREPARE_LIMIT_S = 1800.0  # give up waiting for a worker to prepare a cell after this long


class Phase(Enum):
    ANNOUNCE = "announce"
    PREPARING = "preparing"
    RUNNING = "running"
    SETTLING = "settling"


def spawn_rate(concurrency: int) -> float:
    """Fast enough that a cell's users start within ~0.1 s; the warm-up absorbs the ramp."""
    return min(100.0, concurrency * 10.0)


def settle_seconds(runner: Runner) -> float:
    """How long the last statistics take to reach Locust's CSV files after the last request."""
    worker_reports = WORKER_REPORT_INTERVAL if isinstance(runner, MasterRunner) else 0.0
    return worker_reports + 2 * CSV_STATS_INTERVAL_SEC + 0.5


def resolve_run_dir(options: BenchOptions, csv_prefix: str | None) -> Path | None:
    if options.run_dir:
        return Path(options.run_dir)
    if csv_prefix:
        return Path(csv_prefix).parent
    return None


class GridWalk:
    """One run through a grid; GridShape starts a new walk for every new test start."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.greenlet = gevent.getcurrent()
        namespace = runner.environment.parsed_options
        self.options = BenchOptions.from_namespace(namespace)
        if self.options.grid:
            self.grid = load_grid(self.options.grid)
        else:
            self.grid = single_cell_grid(
                self.options.batch_size, self.options.passage_tokens, concurrency_option(namespace)
            )
        self.seed = (
            self.options.seed if self.options.seed is not None else random.SystemRandom().randrange(2**31)
        )
        self.run_id = uuid.uuid4().hex
        self.run_time = run_time_option(namespace)
        run_dir = resolve_run_dir(self.options, csv_prefix_option(namespace))
        self.cells_csv = CellsCsv(run_dir) if run_dir is not None else None
        self.tracker = CellTracker.of(runner.environment)
        self.records: list[CellRecord] = []
        self.index = 0
        self.phase = Phase.ANNOUNCE
        self.phase_since = time.time()
        self.plan: CellPlan | None = None
        self.expected: set[str] = set()
        self.started = time.monotonic()
        logger.info(
            "grid %s: %d cell(s), %d warm-up + %d measured request(s) per user, payload seed %d%s",
            self.grid.name,
            len(self.grid.cells),
            self.options.warmup_requests,
            self.options.requests_per_user,
            self.seed,
            f", cells.csv in {run_dir}" if run_dir is not None else " (no run directory: no cells.csv)",
        )

    @property
    def cell(self) -> Cell:
        return self.grid.cells[self.index]

    def tick(self) -> tuple[int, float] | None:
        now = time.time()
        if self.run_time is not None and time.monotonic() - self.started > self.run_time:
            if self.phase is not Phase.SETTLING:
                logger.warning("--run-time reached: stopping the grid at cell %d", self.index + 1)
            return None
        if self.phase is Phase.RUNNING:
            self._welcome_late_workers()
            if not self._cell_finished(now):
                return self.cell.concurrency, spawn_rate(self.cell.concurrency)
            # Announce the next cell right away: workers prepare it while the last users stop.
            self.index += 1
            self._enter(Phase.ANNOUNCE, now)
        if self.phase is Phase.ANNOUNCE and self.index >= len(self.grid.cells):
            logger.info("grid %s finished: %d cell(s)", self.grid.name, len(self.records))
            self._enter(Phase.SETTLING, now)
        if self.phase is Phase.SETTLING:
            return (0, STOP_RATE) if now - self.phase_since < settle_seconds(self.runner) else None
        if self.phase is Phase.ANNOUNCE:
            if not self.tracker.load_generators():
                return 0, STOP_RATE  # a master without workers yet: Locust itself says so
            self._announce(now)
        return self._start_when_ready(time.time())

    def _enter(self, phase: Phase, now: float) -> None:
        self.phase = phase
        self.phase_since = now

    def _announce(self, now: float) -> None:
        self.expected = self.tracker.load_generators()
        cell = self.cell
        self.plan = CellPlan(
            run_id=self.run_id,
            index=self.index,
            batch_size=cell.batch_size,
            passage_tokens=cell.passage_tokens,
            concurrency=cell.concurrency,
            users_per_runner=users_per_runner(cell.concurrency, len(self.expected)),
            seed=self.seed,
            options=self.options.public(),
        )
        logger.info("cell %d/%d %s: preparing payloads", self.index + 1, len(self.grid.cells), cell.name)
        self._enter(Phase.PREPARING, now)
        self.tracker.announce(self.plan)  # on a local runner this prepares right here

    def _welcome_late_workers(self) -> None:
        """Workers that connected after the cell was announced get it too: Locust hands them users
        (at the next spawn, or at once with --enable-rebalancing), who need a prepared cell."""
        assert self.plan is not None
        late = self.tracker.load_generators() - self.expected
        if late:
            logger.info(
                "cell %s: %d worker(s) joined; preparing the cell there too", self.cell.name, len(late)
            )
            self.tracker.announce(self.plan, to=late)
            self.expected |= late

    def _start_when_ready(self, now: float) -> tuple[int, float] | None:
        """Start the announced cell once every process prepared it and the last cell's users stopped."""
        assert self.plan is not None
        self._welcome_late_workers()
        ready = self.tracker.ready(self.plan)
        errors = {node: error for node, error in ready.items() if error}
        if errors:
            logger.error("cell %s could not be prepared: %s", self.cell.name, "; ".join(errors.values()))
            self.runner.environment.process_exit_code = 1
            return None
        pending = (self.expected & self.tracker.load_generators()) - set(ready)
        draining = self.runner.user_count > 0 and now - self.phase_since < DRAIN_LIMIT_S
        if draining or (pending and now - self.phase_since < PREPARE_LIMIT_S):
            return 0, STOP_RATE
        self.records.append(CellRecord(self.cell, start=now))
        self._write()
        self._enter(Phase.RUNNING, now)
        logger.info("cell %d/%d %s: running", self.index + 1, len(self.grid.cells), self.cell.name)
        return self.cell.concurrency, spawn_rate(self.cell.concurrency)

    def _cell_finished(self, now: float) -> bool:
        assert self.plan is not None
        record = self.records[-1]
        done = self.tracker.done_times(self.plan)
        if len(done) >= self.cell.concurrency:
            record.end = max(done)
        elif now - record.start > self.options.cell_max_seconds:
            logger.warning(
                "cell %s: --cell-max-seconds (%.0f s) reached with %d of %d users done",
                self.cell.name,
                self.options.cell_max_seconds,
                len(done),
                self.cell.concurrency,
            )
            record.end = now
        else:
            return False
        self._write()
        logger.info("cell %s: done in %.2f s", self.cell.name, record.end - record.start)
        return True

    def _write(self) -> None:
        if self.cells_csv is not None:
            self.cells_csv.write(self.records)


class GridShape(LoadTestShape):
    """The load shape of every embed-bench locustfile: the grid of ``--grid``, or a single cell."""

    use_common_options = True

    def __init__(self) -> None:
        super().__init__()
        self._walk: GridWalk | None = None

    def tick(self) -> tuple[int, float] | None:
        # Locust runs each test start in a new shape greenlet; a walk belongs to the greenlet it
        # started in, so a second run from the web UI starts again from the first cell.
        if self._walk is None or self._walk.greenlet is not gevent.getcurrent():
            assert self.runner is not None
            try:
                self._walk = GridWalk(self.runner)
            except (GridError, OptionError) as exc:
                logger.error("cannot run the grid: %s", exc)
                self.runner.environment.process_exit_code = 2
                return None
        return self._walk.tick()
