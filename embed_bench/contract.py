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

    @property
    def written_by_a_run(self) -> tuple[str, ...]:
        """Glob patterns of every file a run writes (what ``--force`` clears before a new run)."""
        return (self.run_json, self.cells_csv, f"{self.csv_prefix}*.csv", f"{self.csv_prefix}*.log")

    @property
    def marks_a_run(self) -> tuple[str, ...]:
        """Files whose presence means a directory already holds a run."""
        return (self.run_json, self.stats_csv)


RUN_FILES = RunFiles()
CELLS_CSV_COLUMNS = ("cell", "start", "end", "users")
