"""Per-request records: every request every Locust process sends, in ``<run dir>/requests.csv.gz``.

Locust's own statistics round each response time to two significant digits and keep no request, so
exact percentiles, success-only latency and "where the time goes" need a record per request. The
columns are the run contract's ``REQUEST_RECORD_COLUMNS`` (``embed_bench/contract.py``).

- Users append one ``RequestRecord`` (a tuple) per request to their process's ``RequestRecorder``:
  the whole cost on the timed path.
- A worker ships its rows with every regular report to the master (Locust's ``report_to_master``
  event, every 3 s, and once more when it stops or quits) and forgets them.
- The master (``worker_report``) or a single local process collects rows and appends them to the
  file every ``FLUSH_INTERVAL_S``, at test stop and at quit, each flush a complete gzip member (the
  header in the first), so ``pandas.read_csv`` reads the file whole at any time and a crash loses
  at most the last seconds. Memory holds at most a few seconds of rows.
- The run directory is resolved like ``cells.csv``'s (``--run-dir``, else the directory of
  ``--csv``); without one, rows are checked for token counts (below) and dropped.
- On the way to the file the rows' token counts are compared: when a server's usage strays from
  the client's count beyond special tokens, one warning per cell names the likely cause
  (``token_mismatch``).

``KEEP_RECORDS = False`` (set before the environment's ``init`` event) keeps no records at all; only
``benchmarks/loadgen.py`` does that, to show what keeping them costs.
"""

from __future__ import annotations

from locust import events  # first: gevent monkey-patches before anything else loads
from locust.env import Environment
from locust.runners import MasterRunner, Runner, WorkerRunner

# isort: split
import csv
import gzip
import io
import logging
import weakref
from pathlib import Path
from typing import Any, NamedTuple

import gevent

from embed_bench.contract import REQUEST_RECORD_COLUMNS, RUN_FILES
from locustfiles.grid import resolve_run_dir
from locustfiles.options import BenchOptions, OptionError, csv_prefix_option

logger = logging.getLogger(__name__)

KEEP_RECORDS = True  # benchmarks/loadgen.py only: False measures the load generator without records
RECORDS_KEY = "embed_bench_requests"  # the key of the rows in a worker's report to the master
LOCAL_WORKER = "local"
FLUSH_INTERVAL_S = 2.0
MAX_PENDING_ROWS = 20_000  # flush early when a burst of worker reports brings more than this
SPECIAL_TOKENS_PER_INPUT = 2  # [CLS] and [SEP], <s> and </s>: what a server may add to each input
TOKEN_TOLERANCE = 0.01  # and a server's count may differ by 1% before it is called a mismatch


class RequestRecord(NamedTuple):
    """One row of ``requests.csv.gz``: the fields of ``REQUEST_RECORD_COLUMNS``, in their order."""

    cell: str
    repeat: int
    warmup: int
    backend: str
    worker: str
    user: int
    index: int
    batch_size: int
    passage_tokens: int
    tokens_client: int
    tokens_server: int | None
    status: int
    ok: int
    failure: str
    planned_at: float
    sent_at: float
    completed_at: float
    latency_ms: float
    lag_ms: float
    dropped: int
    bytes_sent: int
    bytes_received: int
    queue_ms: float | None
    inference_ms: float | None
    server_total_ms: float | None
    tokenization_ms: float | None


if RequestRecord._fields != REQUEST_RECORD_COLUMNS:
    raise ImportError("RequestRecord no longer matches embed_bench.contract.REQUEST_RECORD_COLUMNS")

SERVER_TIMING_HEADERS = ("x-queue-time", "x-inference-time", "x-total-time", "x-tokenization-time")


def server_timings(headers: Any) -> tuple[float | None, ...]:
    """The server's timing headers in ms, in record order; None where absent or not a number."""
    if not headers:
        return (None, None, None, None)
    values = []
    for name in SERVER_TIMING_HEADERS:
        value = headers.get(name)
        try:
            values.append(float(value) if value is not None else None)
        except (TypeError, ValueError):
            values.append(None)
    return tuple(values)


class RecordFile:
    """``requests.csv.gz``, appended one complete gzip member per flush; the header goes into the
    first member of a new or empty file only, so a second run from the web UI appends rows."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, rows: list[tuple]) -> None:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        if not self.path.exists() or self.path.stat().st_size == 0:
            writer.writerow(REQUEST_RECORD_COLUMNS)
        writer.writerows(rows)
        member = gzip.compress(text.getvalue().encode(), compresslevel=5)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as stream:
            stream.write(member)


def token_mismatch(record: RequestRecord, passage_chars: int | None) -> str | None:
    """Why a successful request's server count strays from the client's, or None when it does not:
    a server may add up to SPECIAL_TOKENS_PER_INPUT per input (and differ by TOKEN_TOLERANCE).

    The client's count is exact (payloads are token-exact under the run's tokenizer), so a stray
    count has a cause: characters counted instead of tokens (the count matches the passages'
    characters), truncation at the model's limit (fewer tokens, the same number per input), or a
    different tokenizer (anything else)."""
    server, client, inputs = record.tokens_server, record.tokens_client, record.batch_size
    if server is None:
        return None
    slack = TOKEN_TOLERANCE * client
    if -slack <= server - client <= SPECIAL_TOKENS_PER_INPUT * inputs + slack:
        return None
    counts = f"server {server:,} vs client {client:,} tokens per request"
    if (
        passage_chars
        and abs(server - passage_chars) <= 0.05 * passage_chars + SPECIAL_TOKENS_PER_INPUT * inputs
    ):
        return (
            f"{counts}: the server counts characters, not tokens (the passages hold {passage_chars:,} "
            "characters; e.g. Infinity without --lengths-via-tokenize)"
        )
    if server < client and server % inputs == 0:
        return (
            f"{counts}: likely truncation at the model's limit ({server // inputs:,} tokens per input "
            f"counted, {record.passage_tokens:,} sent)"
        )
    return f"{counts}: likely a different tokenizer than the run's --tokenizer"


class TokenAudit:
    """Warns once per cell when the server's usage strays from the client's count."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.warned: set[str] = set()
        self._overheads: dict[tuple[str, int], int | None] = {}

    def check(self, rows: list[tuple]) -> None:
        for row in rows:
            record = RequestRecord(*row)
            if not record.ok or record.tokens_server is None or record.cell in self.warned:
                continue
            reason = token_mismatch(record, self._passage_chars(record))
            if reason is not None:
                self.warned.add(record.cell)
                logger.warning(
                    "cell %s: the server's token count strays from the client's, %s. Throughput uses "
                    "the client's count; the server's is kept as tokens_server in %s",
                    record.cell,
                    reason,
                    RUN_FILES.requests,
                )

    def _passage_chars(self, record: RequestRecord) -> int | None:
        """Characters of the passages: the body's bytes less the backend's JSON around them (exact for
        ASCII passages, which the passage generator makes)."""
        key = (record.backend, record.batch_size)
        if key not in self._overheads:
            self._overheads[key] = self._overhead(*key)
        overhead = self._overheads[key]
        return record.bytes_sent - overhead if overhead is not None and record.bytes_sent else None

    def _overhead(self, backend: str, inputs: int) -> int | None:
        for user_class in self.environment.user_classes:
            if user_class.__name__ == backend and hasattr(user_class, "encode_request"):
                options = BenchOptions.from_namespace(self.environment.parsed_options)
                return len(user_class.encode_request([""] * inputs, options))
        return None


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
        if isinstance(runner, MasterRunner):
            environment.events.worker_report.add_listener(self.on_worker_report)
        environment.events.test_start.add_listener(self.on_test_start)
        environment.events.test_stop.add_listener(self.flush)
        environment.events.quit.add_listener(self.flush)  # after a master's last worker reports
        self._flusher = gevent.spawn(self._flush_every)

    @classmethod
    def of(cls, environment: Environment) -> RequestRecorder | None:
        return cls._instances.get(environment)

    def keep(self, record: RequestRecord) -> None:
        self.rows.append(record)

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
        rows, self.rows = self.rows, []
        if not rows:
            return
        self.audit.check(rows)
        if self.file is None:
            return
        try:
            self.file.append(rows)
        except OSError as exc:
            logger.error("could not append %d request record(s) to %s: %s", len(rows), self.file.path, exc)

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
