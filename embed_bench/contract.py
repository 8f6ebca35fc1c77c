"""The run contract: what the Locust side writes and the reports read, spelled once.

A run directory is the interface between ``locustfiles/`` (which produces it), ``embed_bench run``
(which starts and watches it) and ``reports/`` (which reads it). The three agree here on:

- :class:`Cell`, one grid point, built by keyword only so no caller can swap two of its integers;
- the request name that carries a cell through every Locust CSV (``b=32 t=512 c=5``), its parser
  and the prefix of warm-up requests;
- the names of the files in a run directory.

Kept free of Locust, pandas and torch imports: every package imports it, including the
``embed-bench run`` process that must not be monkey-patched by gevent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

WARMUP_PREFIX = "warmup "
_CELL_NAME = re.compile(r"b=(\d+) t=(\d+) c=(\d+)")


class GridError(ValueError):
    """A cell, grid name or grid file that cannot be walked."""


@dataclass(frozen=True, order=True, kw_only=True)
class Cell:
    """One point of the study's grid: requests of ``batch_size`` passages of ``passage_tokens`` tokens,
    sent by ``concurrency`` users at once.

    The field order sorts cells the way the study's tables list them (concurrency outermost)."""

    concurrency: int
    batch_size: int
    passage_tokens: int

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GridError(f"{spec.name} must be a positive integer, got {value!r}")

    @property
    def name(self) -> str:
        """The request name of the cell's measured requests, e.g. ``b=32 t=512 c=5``."""
        return f"b={self.batch_size} t={self.passage_tokens} c={self.concurrency}"

    @property
    def warmup_name(self) -> str:
        return WARMUP_PREFIX + self.name

    @property
    def nominal_tokens_per_request(self) -> int:
        """Tokens a request carries by construction (passages are token-exact)."""
        return self.batch_size * self.passage_tokens


def parse_cell_name(name: str) -> Cell | None:
    """The cell of a measured request name; None for warm-ups, ``Aggregated`` or foreign names."""
    match = _CELL_NAME.fullmatch(name.strip())
    if match is None:
        return None
    batch, tokens, concurrency = (int(group) for group in match.groups())
    return Cell(concurrency=concurrency, batch_size=batch, passage_tokens=tokens)


def is_warmup_name(name: str) -> bool:
    return name.strip().startswith(WARMUP_PREFIX.strip())


@dataclass(frozen=True)
class RunFiles:
    """The files of a run directory. Locust writes its CSVs as ``--csv <dir>/locust``."""

    csv_prefix: str = "locust"
    run_json: str = "run.json"
    cells_csv: str = "cells.csv"
    stats_csv: str = "locust_stats.csv"
    history_csv: str = "locust_stats_history.csv"
    failures_csv: str = "locust_failures.csv"
    exceptions_csv: str = "locust_exceptions.csv"
    log: str = "locust.log"
    worker_log: str = "locust-worker.log"
    console_log: str = "locust-console.log"
    requests: str = "requests.csv.gz"

    @property
    def written_by_a_run(self) -> tuple[str, ...]:
        """Glob patterns of every file a run writes (what ``--force`` clears before a new run)."""
        return (
            self.run_json,
            self.cells_csv,
            self.requests,
            f"{self.csv_prefix}*.csv",
            f"{self.csv_prefix}*.log",
        )

    @property
    def marks_a_run(self) -> tuple[str, ...]:
        """Files whose presence means a directory already holds a run."""
        return (self.run_json, self.stats_csv)


RUN_FILES = RunFiles()
# cells.csv: one row per cell walked (per repeat), rewritten whole at every change. ``planned`` is the
# cell's measured requests (users x --requests-per-user); ``completed`` those that got an outcome
# (success or failure), empty until the cell's counts are final; ``succeeded`` the successful ones;
# ``failures`` the most frequent failure classes, e.g. "HTTP 404 (5); timeout (2)". Files written
# before these columns existed hold only cell, start, end, users.
CELLS_CSV_COLUMNS = (
    "cell",
    "repeat",
    "start",
    "end",
    "users",
    "planned",
    "completed",
    "succeeded",
    "failures",
)

# The per-request record (RUN_FILES.requests): one row per request any Locust process sent or dropped,
# appended by the master as multi-member gzip (each flush a complete member, the header in the first),
# so pandas.read_csv reads it whole and a crash loses at most the rows since the last flush.
# Times are wall-clock epoch seconds; durations are exact milliseconds (never Locust's rounded ones);
# empty fields mean "not known" (no usage reported, no timing header, not sent).
REQUEST_RECORD_COLUMNS = (
    "cell",  # the request name without the warm-up prefix, e.g. "b=32 t=512 c=5"
    "repeat",  # 0-based repeat of the grid walk (embed-bench run --repeats N)
    "warmup",  # 1 for a warm-up request, 0 for a measured one
    "backend",  # the user class, e.g. SelfHostedUser
    "worker",  # the Locust process that sent it ("local" for a single process)
    "user",  # the user's number in its process
    "index",  # the request's index in its user's assignment for the cell
    "batch_size",  # inputs in the request
    "passage_tokens",  # tokens per passage under the run's tokenizer (special tokens excluded)
    "tokens_client",  # batch_size x passage_tokens: the tokens sent, counted by the client
    "tokens_server",  # the server's reported usage, empty when it reports none
    "status",  # HTTP status, 0 when no response arrived
    "ok",  # 1 when the request succeeded and its body passed the checks
    "failure",  # the failure class as in locust_failures.csv, empty on success
    "planned_at",  # when the request was due (open loop: its arrival time; closed loop: = sent_at)
    "sent_at",  # when it was sent
    "completed_at",  # when its answer (or error) arrived
    "latency_ms",  # completed_at - planned_at, exact
    "lag_ms",  # sent_at - planned_at: how late the load generator sent it
    "dropped",  # 1 when an open-loop request was never sent (no free user within the bound)
    "bytes_sent",
    "bytes_received",
    "queue_ms",  # x-queue-time
    "inference_ms",  # x-inference-time
    "server_total_ms",  # x-total-time
    "tokenization_ms",  # x-tokenization-time (TEI)
)
