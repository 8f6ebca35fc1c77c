"""The run contract: what the Locust side writes and the reports read, spelled once.

A run directory is the interface between ``locustfiles/`` (which produces it), ``embed_bench run``
(which starts and watches it) and ``reports/`` (which reads it). The three agree here on:

- :class:`Cell`, one grid point, built by keyword only so no caller can swap two of its integers;
- the request name that carries a cell through every Locust CSV (``b=32 t=512 c=5``), its parser
  and the prefix of warm-up requests;
- :class:`RateCell`, an open-loop cell (``r=20 b=1 t=128`` or ``r=40 mix=search``), and its parser;
- the names of the files in a run directory.

Kept free of Locust, pandas and torch imports: every package imports it, including the
``embed-bench run`` process that must not be monkey-patched by gevent.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from embed_bench.core.validation import positive_int, positive_number

if TYPE_CHECKING:  # lengths imports this module's GridError
    from embed_bench.core.lengths import LengthDistribution

WARMUP_PREFIX = "warmup "
_CELL_NAME = re.compile(r"b=(\d+) t=(\d+) c=(\d+)")
_RATE_SHAPE_NAME = re.compile(r"r=(\S+) b=(\d+) t=(\d+)")
_RATE_MIX_NAME = re.compile(r"r=(\S+) mix=(\S+)")
ARRIVALS = ("poisson", "constant")
DEFAULT_MIX_LABEL = "mix"


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
            _positive_int(getattr(self, spec.name), spec.name)

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


def _positive_int(value: object, what: str) -> int:
    return positive_int(
        value, what, error=GridError, message="{name} must be a positive integer, got {value!r}"
    )


def _positive_number(value: object, what: str) -> float:
    return positive_number(
        value, what, error=GridError, message="{name} must be a {kind} finite number, got {value!r}"
    )


@dataclass(frozen=True, order=True)
class Shape:
    """One request shape of a rate cell: ``batch_size`` passages of ``passage_tokens`` tokens, drawn
    with relative ``weight`` among the cell's shapes. With ``lengths`` (a variable length
    distribution, ``embed_bench.core.lengths``) each passage draws its own length and
    ``passage_tokens`` is the longest a draw can give."""

    batch_size: int
    passage_tokens: int
    weight: float = 1.0
    lengths: LengthDistribution | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _positive_int(self.batch_size, "batch_size")
        _positive_int(self.passage_tokens, "passage_tokens")
        _positive_number(self.weight, "weight")
        if self.lengths is not None and self.lengths.longest != self.passage_tokens:
            raise GridError(
                f"passage_tokens {self.passage_tokens} must be the distribution's longest, {self.lengths.longest}"
            )

    @property
    def variable(self) -> bool:
        return self.lengths is not None and not self.lengths.is_fixed

    @property
    def nominal_tokens(self) -> int:
        return self.batch_size * self.passage_tokens

    @property
    def mean_tokens(self) -> float:
        """Tokens per request on average: ``batch_size`` x the mean passage length."""
        return self.batch_size * (self.lengths.mean() if self.variable else self.passage_tokens)


@dataclass(frozen=True, kw_only=True)
class RateCell:
    """An open-loop cell: requests arrive at ``request_rate`` per second (across all load generators)
    for ``duration_s`` seconds, each of one of ``shapes`` drawn by weight, whatever the server answers.

    Its request name keeps the offered rate and the shape, ``r=20 b=1 t=128``, or for a mix of two or
    more shapes the ``label``, ``r=40 mix=search``; the per-request records carry each request's own
    batch_size and passage_tokens, so per-shape figures come from them."""

    request_rate: float
    duration_s: float
    shapes: tuple[Shape, ...]
    label: str = DEFAULT_MIX_LABEL
    arrival: str = "poisson"
    trace: str = ""  # a replayed trace file (--trace): its rows, not the shapes, give the requests
    trace_rows: int = 0  # and how many there are: every row is sent once, none is a warm-up

    def __post_init__(self) -> None:
        _positive_number(self.request_rate, "request_rate")
        _positive_number(self.duration_s, "duration_s")
        if not isinstance(self.shapes, tuple) or not self.shapes:
            raise GridError(f"a rate cell needs a non-empty tuple of shapes, got {self.shapes!r}")
        for shape in self.shapes:
            if not isinstance(shape, Shape):
                raise GridError(f"a rate cell's shapes must be Shape, got {shape!r}")
        if len({(shape.batch_size, shape.passage_tokens) for shape in self.shapes}) != len(self.shapes):
            raise GridError("a rate cell lists a shape twice; give it one weight")
        if not isinstance(self.label, str) or not re.fullmatch(r"\S+", self.label):
            raise GridError(f"a mix label is one word without spaces, got {self.label!r}")
        if self.arrival not in ARRIVALS:
            raise GridError(f"arrival must be {' or '.join(ARRIVALS)}, got {self.arrival!r}")

    @property
    def name(self) -> str:
        """``r=20 b=1 t=128`` for one shape of one length, ``r=40 mix=<label>`` for a mix, a shape of
        variable lengths or a trace (whose requests carry their own shapes in the records)."""
        if len(self.shapes) == 1 and not self.shapes[0].variable and not self.trace:
            shape = self.shapes[0]
            return f"r={self.request_rate:g} b={shape.batch_size} t={shape.passage_tokens}"
        return f"r={self.request_rate:g} mix={self.label}"

    @property
    def warmup_name(self) -> str:
        return WARMUP_PREFIX + self.name

    @property
    def mean_tokens_per_request(self) -> float:
        total = sum(shape.weight for shape in self.shapes)
        return sum(shape.weight * shape.mean_tokens for shape in self.shapes) / total


@dataclass(frozen=True, kw_only=True)
class RateCellName:
    """What a rate cell's request name says: the offered rate, and the shape or the mix label."""

    request_rate: float
    batch_size: int | None = None
    passage_tokens: int | None = None
    mix_label: str | None = None

    @property
    def name(self) -> str:
        if self.mix_label is not None:
            return f"r={self.request_rate:g} mix={self.mix_label}"
        return f"r={self.request_rate:g} b={self.batch_size} t={self.passage_tokens}"


def parse_rate_cell_name(name: str) -> RateCellName | None:
    """The rate (and shape or mix label) of a rate cell's measured request name; None for warm-ups,
    closed-loop cells and foreign names."""
    text = name.strip()
    if match := _RATE_SHAPE_NAME.fullmatch(text):
        rate, batch, tokens = match.groups()
        shape = {"batch_size": int(batch), "passage_tokens": int(tokens)}
        label = None
    elif match := _RATE_MIX_NAME.fullmatch(text):
        rate, label = match.groups()
        shape = {}
    else:
        return None
    try:
        request_rate = float(rate)
    except ValueError:
        return None
    if not math.isfinite(request_rate) or request_rate <= 0 or 0 in shape.values():
        return None
    return RateCellName(request_rate=request_rate, mix_label=label, **shape)


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
    capacity_json: str = (
        "capacity.json"  # a capacity search's answer; embed-bench run copies it into run.json
    )
    server_metrics_csv: str = "server_metrics.csv"  # the target's /metrics, sampled by embed-bench run
    progress_json: str = "progress.json"  # where the walk stands, rewritten by the master each second

    @property
    def written_by_a_run(self) -> tuple[str, ...]:
        """Glob patterns of every file a run writes (what ``--force`` clears before a new run)."""
        return (
            self.run_json,
            self.cells_csv,
            self.requests,
            self.capacity_json,
            self.server_metrics_csv,
            self.progress_json,
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
# before these columns existed hold only cell, start, end, users. Rate cells (``RateCell``) fill
# ``request_rate`` (offered requests/s) and ``dropped`` (never sent: no free user within --max-lag);
# their ``users`` is --max-in-flight and ``planned`` the arrivals the schedule offered. Both are empty
# for closed-loop cells. ``workers_lost``: Locust workers that vanished while the cell ran (their
# users' requests are among the unfinished ones); empty when none did.
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
    "request_rate",
    "dropped",
    "workers_lost",
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
