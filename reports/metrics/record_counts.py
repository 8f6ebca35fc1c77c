"""A run's request records checked against the counts the run kept on its own, cell by cell.

Exact percentiles rest on ``requests.csv.gz``. When rows never reached it (the recorder could not
write them, the file was cut), the figures describe a subset, and nothing in the records says so.
``cells.csv`` counts each cell's completed requests from Locust's own statistics, independently of
the records, so comparing the two per cell and repeat finds every such loss. More records than
completed requests mean another thing: rows of an earlier run appended to the same file (a second
run started from the web UI into the same directory), two runs mixed into one figure.

A cell that lost a Locust worker while it ran (``workers_lost`` in cells.csv) is flagged here too:
its users' requests went with the worker, so it completed fewer than it planned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from embed_bench.core.contract import RUN_FILES
from reports.load.records import CellWindow


@dataclass(frozen=True)
class CountMismatch:
    """A cell (of one repeat) whose records and completed count differ."""

    cell: str
    repeat: int
    completed: int
    records: int

    def describe(self) -> str:
        where = self.cell + (f" (repeat {self.repeat + 1})" if self.repeat else "")
        counts = f"{where}: {self.records:,} request record(s) for {self.completed:,} completed request(s) in {RUN_FILES.cells_csv}"
        if self.records < self.completed:
            return (
                f"{counts}: {self.completed - self.records:,} record(s) MISSING, its figures rest on a subset "
                f"({RUN_FILES.log} says why the recorder could not write them)"
            )
        return (
            f"{counts}: {self.records - self.completed:,} record(s) too many (another run appended to "
            f"the same {RUN_FILES.requests}?), its figures mix runs"
        )


def count_mismatches(rows: pd.DataFrame | None, windows: Sequence[CellWindow]) -> list[CountMismatch]:
    """Cells whose measured records (warm-ups left out, dropped arrivals in) differ from their
    ``completed`` count; none when there are no records or no counts to compare with."""
    if rows is None:
        return []
    measured = rows[~rows["warmup"]]
    counts = measured.groupby(["cell", "repeat"]).size().to_dict() if len(measured) else {}
    found = []
    for window in windows:
        if window.completed is None:
            continue  # an interrupted cell, or a file from before the counts
        records = int(counts.get((window.cell, window.repeat), 0))
        if records != window.completed:
            found.append(CountMismatch(window.cell, window.repeat, window.completed, records))
    return found


def lost_workers(windows: Sequence[CellWindow]) -> list[str]:
    """``b=1 t=16 c=4: 1 Locust worker lost mid-cell, 6/10 requests completed``, per cell that lost one."""
    lines = []
    for window in windows:
        if not window.workers_lost:
            continue
        where = window.cell + (f" (repeat {window.repeat + 1})" if window.repeat else "")
        counts = (
            f", {window.completed}/{window.planned} requests completed"
            if window.completed is not None and window.planned is not None
            else ""
        )
        lines.append(f"{where}: {window.workers_lost} Locust worker(s) lost mid-cell{counts}")
    return lines


def count_alerts(rows: pd.DataFrame | None, windows: Sequence[CellWindow]) -> list[str]:
    """What the report flags for these cells: workers lost, records that do not match the counts."""
    return [*lost_workers(windows), *(mismatch.describe() for mismatch in count_mismatches(rows, windows))]
