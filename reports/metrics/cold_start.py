"""The cold-start check: a cell whose first requests were much slower than its last ones.

A server that has just started (or has just been given a new shape) answers slowly until its
caches, allocator and kernels are warm: on a fresh ``embed-bench serve`` on 2 CPU cores, b=1 t=128
took a median 549 ms of inference, and 32 ms thirteen minutes later (17x). A cell measured during that
time mixes both states, and its figures describe neither. ``embed-bench serve`` warms up until latency
settles; this check catches a run where that was not enough (another server, a shorter warm-up).

Each walk of a cell (a cell and repeat) is checked on its successful measured requests, in the order
they were sent (open loop: planned), by latency (open loop: from the planned send time):

- the median latency of the first tenth against that of the last tenth;
- flagged when the first is more than ``COLD_START_RATIO`` (4) times the last. Warm servers on the
  shared 2-core machine gave up to 3.5x: the 125 walks of one shape in the raw files of
  ``benchmarks/results/cpu2-2026-12-04`` and ``cpu2-2026-12-05`` (``benchmarks/cold_start_scan.py``;
  raw file ``benchmarks/results/cpu2-2026-12-05/cold-start-scan/walks.csv``): median 1.0x, 90th
  percentile 1.7x, the highest 3.5x, 3.0x and 3.0x, all capacity steps near their knee, where a queue
  that builds early, or other work on the machine, moves a tenth's median that far;
- not checked below ``MIN_REQUESTS`` (30) successful requests: a tenth of fewer than 3 requests is
  one or two latencies, noise alone; nor where the requests vary in shape (a trace, a mix, varied
  lengths), whose tenths differ by what they hold. Those walks are listed as not checked, never as
  warm.

A queue that grows during an overloaded rate cell makes the last tenth the slower one: that is not a
cold start, and the rate-cell tables show it (lag, drops, p95 against the rate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reports.load.runs import RunData

COLD_START_RATIO = 4.0
MIN_REQUESTS = 30
TENTH = 0.1
TOO_FEW = f"fewer than {MIN_REQUESTS} successful requests"
SEVERAL_SHAPES = "requests of several shapes"


@dataclass(frozen=True)
class WarmthCheck:
    """One walk of one cell: the medians of its first and last tenth of successful requests."""

    cell: str  # with " (repeat N)" when the run walked the cell more than once
    requests: int  # successful measured requests checked
    tenth: int  # requests in each tenth
    first_median_ms: float
    last_median_ms: float

    @property
    def ratio(self) -> float:
        return self.first_median_ms / self.last_median_ms if self.last_median_ms > 0 else float("inf")

    @property
    def cold(self) -> bool:
        return self.ratio > COLD_START_RATIO


@dataclass(frozen=True)
class RunWarmth:
    """A run's cold-start check: every walk checked, and those with too few requests to check."""

    label: str
    checked: tuple[WarmthCheck, ...]
    not_checked: tuple[tuple[str, str], ...]  # (walk, why: TOO_FEW or SEVERAL_SHAPES)

    @property
    def flagged(self) -> tuple[WarmthCheck, ...]:
        return tuple(check for check in self.checked if check.cold)


def check_walk(cell: str, rows: pd.DataFrame) -> WarmthCheck | str:
    """The check of one walk's successful measured requests (typed record rows), or why it was not
    checked (``TOO_FEW``, ``SEVERAL_SHAPES``)."""
    if len(rows) < MIN_REQUESTS:
        return TOO_FEW
    if len(rows[["batch_size", "passage_tokens"]].drop_duplicates()) > 1:
        return SEVERAL_SHAPES
    sent = rows["sent_at"].fillna(rows["planned_at"])
    latencies = (
        rows.assign(_sent=sent).sort_values("_sent", kind="stable")["latency_ms"].to_numpy(dtype=float)
    )
    tenth = max(int(len(latencies) * TENTH), 1)
    return WarmthCheck(
        cell,
        len(latencies),
        tenth,
        float(np.median(latencies[:tenth])),
        float(np.median(latencies[-tenth:])),
    )


def _walks(frame: pd.DataFrame | None) -> list[tuple[str, pd.DataFrame]]:
    if frame is None or frame.empty:
        return []
    ok = frame[~frame["warmup"] & ~frame["dropped"] & frame["ok"]]
    repeats = frame.groupby("cell")["repeat"].nunique()
    return [
        (cell if repeats[cell] < 2 else f"{cell} (repeat {int(repeat) + 1})", rows)
        for (cell, repeat), rows in ok.groupby(["cell", "repeat"], sort=False)
    ]


def run_warmth(run: RunData) -> RunWarmth | None:
    """The check over every closed-loop and rate cell of the run; None without request records."""
    records = run.records
    if records is None:
        return None
    checked, not_checked = [], []
    for name, rows in [*_walks(records.frame), *_walks(records.rate)]:
        check = check_walk(name, rows)
        if isinstance(check, str):
            not_checked.append((name, check))
        else:
            checked.append(check)
    return RunWarmth(run.label, tuple(checked), tuple(not_checked))


def cold_start_alerts(runs: Sequence[RunWarmth]) -> tuple[str, ...]:
    """One line per flagged walk, for the report's first screen."""
    return tuple(
        f"COLD START? {run.label}, {check.cell}: the first tenth of its successful requests took a median "
        f"{check.first_median_ms:,.0f} ms, the last tenth {check.last_median_ms:,.0f} ms ({check.ratio:.1f}x, "
        f"flagged above {COLD_START_RATIO:g}x): the server was likely still warming up (or something else "
        "slowed the cell's start), and the cell's figures mix both states; warm the server up longer and "
        "measure the cell again"
        for run in runs
        for check in run.flagged
    )
