"""RequestRecorder: collects every request's record in each Locust process and brings them to the file.

- Users append one tuple per request (in ``embed_bench.core.records.RequestRecord`` order) to their
  process's recorder: the whole cost on the timed path, a few microseconds.
- A worker ships its rows with every regular report to the master (Locust's ``report_to_master``
  event, every 3 s, and once more when it stops or quits) and forgets them.
- The master (``worker_report``) or a single local process collects rows and appends them to
  ``<run dir>/requests.csv.gz`` every ``FLUSH_INTERVAL_S``, at test stop and at quit (after a
  master's workers sent their last reports). Memory holds at most a few seconds of rows.
- A flush that fails (a full disk, a file that cannot be opened) keeps its rows: they are written
  by a later flush, retried with a growing pause (``RETRY_DELAYS_S``), with the rows that came in
  meanwhile. Rows are given up only when the file still cannot be written at quit (after
  ``QUIT_RETRY_DELAYS_S``), or when more than ``MAX_KEPT_ROWS`` wait (the oldest go first); every row
  given up is counted in ``lost_rows`` / ``lost_measured`` and logged as an error. ``embed-bench run``
  and the report find the loss again by comparing the file with ``cells.csv``'s ``completed`` counts.
- The run directory is resolved like ``cells.csv``'s (``--run-dir``, else the directory of
  ``--csv``); without one, rows are audited for token counts and dropped.
- Subscribers (``subscribe``) see every batch of rows on the master or local process before it is
  written: the web UI's live grid (``embed_bench.load.web_ui``) reads its exact figures from them.

``KEEP_RECORDS = False`` (set before the environment's ``init`` event) keeps no records at all; only
``benchmarks/loadgen.py`` does that, to show what keeping them costs. Attached to every runner by an
``init`` listener, like ``embed_bench.load.workload``'s listeners.
"""

from __future__ import annotations

from locust import events  # first: gevent monkey-patches before anything else loads
from locust.env import Environment
from locust.runners import MasterRunner, Runner, WorkerRunner

# isort: split
import logging
import time
import weakref
from collections import Counter
from collections.abc import Callable
from typing import Any

import gevent

from embed_bench.core.contract import RUN_FILES
from embed_bench.core.options import BenchOptions, OptionError, csv_prefix_option, resolve_run_dir
from embed_bench.core.records import RecordFile, TokenAudit

logger = logging.getLogger(__name__)

KEEP_RECORDS = True  # benchmarks/loadgen.py only: False measures the load generator without records
RECORDS_KEY = "embed_bench_requests"  # the key of the rows in a worker's report to the master
LOCAL_WORKER = "local"
FLUSH_INTERVAL_S = 2.0
MAX_PENDING_ROWS = 20_000  # flush early when a burst of worker reports brings more than this
# A failed flush is tried again after these pauses (the last one repeats) while the run goes on, and
# after QUIT_RETRY_DELAYS_S at quit; rows wait in memory meanwhile, at most MAX_KEPT_ROWS of them
# (a row is about 500 bytes: 100 MB), the oldest given up first.
RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
QUIT_RETRY_DELAYS_S = (0.5, 1.0, 2.0)
MAX_KEPT_ROWS = 200_000
_CELL, _REPEAT, _WARMUP = 0, 1, 2  # fields of a row (RequestRecord order)


class RequestRecorder:
    """One per Locust process: collects its users' rows; ships them (worker) or writes them (master,
    local). Subscribes in ``__init__``, guarded for the runner's role."""

    _instances: weakref.WeakKeyDictionary[Environment, RequestRecorder] = weakref.WeakKeyDictionary()

    def __init__(self, environment: Environment, runner: Runner) -> None:
        self.environment = environment
        self.worker = runner.client_id if isinstance(runner, WorkerRunner) else LOCAL_WORKER
        self.rows: list[tuple] = []
        RequestRecorder._instances[environment] = self
        if isinstance(runner, WorkerRunner):
            environment.events.report_to_master.add_listener(self.on_report_to_master)
            return
        self.audit = TokenAudit(environment)
        self.file: RecordFile | None = None
        self.subscribers: list[Callable[[list[tuple]], None]] = []
        self._published = 0  # rows[:_published] were shown to the subscribers already
        self.failures = 0  # flushes failed in a row
        self._retry_at = 0.0  # monotonic time before which a failed flush is not tried again
        self.lost_rows = 0  # rows given up: the file could not be written
        self.lost_measured: Counter[tuple[str, int]] = Counter()  # (cell, repeat) -> measured rows lost
        if isinstance(runner, MasterRunner):
            environment.events.worker_report.add_listener(self.on_worker_report)
        environment.events.test_start.add_listener(self.on_test_start)
        environment.events.test_stop.add_listener(self.flush)
        environment.events.quit.add_listener(self.on_quit)
        self._flusher = gevent.spawn(self._flush_every)

    @classmethod
    def of(cls, environment: Environment) -> RequestRecorder | None:
        return cls._instances.get(environment)

    def keep(self, record: tuple) -> None:
        """A user's record: a plain tuple in ``RequestRecord`` order."""
        self.rows.append(record)

    def subscribe(self, subscriber: Callable[[list[tuple]], None]) -> None:
        """Call ``subscriber(rows)`` with every row this master or local process collects, once."""
        self.subscribers.append(subscriber)

    def publish(self) -> None:
        """Show the rows collected since the last call to the subscribers now, without writing them
        (a live view polls this between the file's flushes), and audit their token counts once."""
        rows, self._published = self.rows[self._published :], len(self.rows)
        if not rows:
            return
        self.audit.check(rows)
        for subscriber in self.subscribers:
            try:
                subscriber(rows)
            except Exception:
                logger.exception("a request-record subscriber failed")

    # --- worker ----------------------------------------------------------------------------------
    def on_report_to_master(self, client_id: str, data: dict[str, Any], **_kwargs: Any) -> None:
        if self.rows:
            data[RECORDS_KEY], self.rows = self.rows, []

    # --- master and local ------------------------------------------------------------------------
    def on_worker_report(self, client_id: str, data: dict[str, Any], **_kwargs: Any) -> None:
        rows = data.get(RECORDS_KEY)
        if rows:
            self.rows.extend(rows)
            if len(self.rows) > MAX_PENDING_ROWS and time.monotonic() >= self._retry_at:
                self.flush()

    def on_test_start(self, **_kwargs: Any) -> None:
        """Resolve the file when the options are final (the web UI sets them at start)."""
        namespace = self.environment.parsed_options
        try:
            run_dir = resolve_run_dir(BenchOptions.from_namespace(namespace), csv_prefix_option(namespace))
        except OptionError:
            run_dir = None  # GridShape reports the bad option and stops the run
        self.file = RecordFile(run_dir / RUN_FILES.requests) if run_dir is not None else None

    def flush(self, **_kwargs: Any) -> bool:
        """Append the waiting rows to the file; True when nothing is left waiting. A failure keeps
        the rows for the next flush (tried again after a pause, ``RETRY_DELAYS_S``)."""
        self.publish()
        if not self.rows:
            return True
        if self.file is None:
            self.rows, self._published = [], 0
            return True
        try:
            self.file.append(self.rows)
        except OSError as exc:
            self._failed(exc)
            return False
        if self.failures:
            logger.warning(
                "request records: %s written after %d failed attempt(s); nothing lost",
                self.file.path,
                self.failures,
            )
        self.rows, self._published, self.failures = [], 0, 0
        return True

    def _failed(self, exc: OSError) -> None:
        """Keep the rows, say so, and wait before the next attempt; beyond MAX_KEPT_ROWS give up
        the oldest."""
        delay = RETRY_DELAYS_S[min(self.failures, len(RETRY_DELAYS_S) - 1)]
        self.failures += 1
        self._retry_at = time.monotonic() + delay
        assert self.file is not None
        logger.error(
            "could not append %d request record(s) to %s (attempt %d: %s); they are kept and tried again "
            "in %g s",
            len(self.rows),
            self.file.path,
            self.failures,
            exc,
            delay,
        )
        excess = len(self.rows) - MAX_KEPT_ROWS
        if excess > 0:
            self._give_up(excess, f"more than {MAX_KEPT_ROWS:,} rows waiting ({exc})")

    def _give_up(self, count: int, reason: str) -> None:
        """Drop the oldest ``count`` waiting rows and count them as lost."""
        dropped, self.rows = self.rows[:count], self.rows[count:]
        self._published = max(0, self._published - count)
        self.lost_rows += len(dropped)
        measured = Counter((row[_CELL], row[_REPEAT]) for row in dropped if not row[_WARMUP])
        self.lost_measured.update(measured)
        path = self.file.path if self.file is not None else RUN_FILES.requests
        logger.error(
            "request records LOST: %d row(s) (%d measured: %s) could not be written to %s: %s",
            len(dropped),
            sum(measured.values()),
            ", ".join(f"{cell} ({number})" for (cell, _), number in sorted(measured.items())) or "none",
            path,
            reason,
        )

    def on_quit(self, **_kwargs: Any) -> None:
        """The last flush: Locust fires ``quit`` after a master's workers sent their final reports.
        A file that still fails gets QUIT_RETRY_DELAYS_S more attempts; what is left is lost."""
        self._flusher.kill(block=False)
        if self.flush():
            return
        for delay in QUIT_RETRY_DELAYS_S:
            gevent.sleep(delay)
            if self.flush():
                return
        self._give_up(len(self.rows), f"still failing at quit after {self.failures} attempts")

    def _flush_every(self) -> None:
        while True:
            gevent.sleep(FLUSH_INTERVAL_S)
            if time.monotonic() < self._retry_at:
                continue
            try:
                self.flush()
            except Exception:
                logger.exception("flushing request records failed")


def attach(environment: Environment, runner: Runner | None) -> None:
    if runner is not None and KEEP_RECORDS and RequestRecorder.of(environment) is None:
        RequestRecorder(environment, runner)


@events.init.add_listener
def _attach_on_init(environment: Environment, runner: Runner | None = None, **_kwargs: Any) -> None:
    attach(environment, runner)
