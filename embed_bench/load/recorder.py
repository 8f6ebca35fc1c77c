"""RequestRecorder: collects every request's record in each Locust process and brings them to the file.

- Users append one tuple per request (in ``embed_bench.core.records.RequestRecord`` order) to their
  process's recorder: the whole cost on the timed path, a few microseconds.
- A worker ships its rows with every regular report to the master (Locust's ``report_to_master``
  event, every 3 s, and once more when it stops or quits) and forgets them.
- The master (``worker_report``) or a single local process collects rows and appends them to
  ``<run dir>/requests.csv.gz`` every ``FLUSH_INTERVAL_S``, at test stop and at quit (after a
  master's workers sent their last reports). Memory holds at most a few seconds of rows.
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
import weakref
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
        (a live view polls this between the file's flushes)."""
        rows, self._published = self.rows[self._published :], len(self.rows)
        if not rows:
            return
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
            if len(self.rows) > MAX_PENDING_ROWS:
                self.flush()

    def on_test_start(self, **_kwargs: Any) -> None:
        """Resolve the file when the options are final (the web UI sets them at start)."""
        namespace = self.environment.parsed_options
        try:
            run_dir = resolve_run_dir(BenchOptions.from_namespace(namespace), csv_prefix_option(namespace))
        except OptionError:
            run_dir = None  # GridShape reports the bad option and stops the run
        self.file = RecordFile(run_dir / RUN_FILES.requests) if run_dir is not None else None

    def flush(self, **_kwargs: Any) -> None:
        self.publish()
        rows, self.rows, self._published = self.rows, [], 0
        if not rows:
            return
        self.audit.check(rows)
        if self.file is None:
            return
        try:
            self.file.append(rows)
        except OSError as exc:
            logger.error("could not append %d request record(s) to %s: %s", len(rows), self.file.path, exc)

    def on_quit(self, **_kwargs: Any) -> None:
        """The last flush: Locust fires ``quit`` after a master's workers sent their final reports."""
        self._flusher.kill(block=False)
        self.flush()

    def _flush_every(self) -> None:
        while True:
            gevent.sleep(FLUSH_INTERVAL_S)
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
