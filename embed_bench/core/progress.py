"""Progress on long work: which cell of how many, payloads built of planned, requests done of
planned, the time spent, and an estimate of the time left only where the evidence supports one.

Why: on the study's heaviest cell payload preparation took 411 s, and the console said "preparing
payloads" and nothing else until the cell ended. The state lives here, free of Locust, so the grid
walker (which fills it on the master from its workers' reports), ``embed-bench run`` (which reads it
from the run directory's ``progress.json``) and the web UI's tab (which shows it in ``state.json``)
all show the same figures, and the estimate is made by one rule.

The estimate is honest or absent. Within one phase of one cell every unit of work is alike (every
body of a closed-loop cell has the same shape; every request of a cell carries the same tokens), so
the rate so far extrapolates to the rest -- but only after enough of it was seen
(``MIN_SHARE`` of the work and ``MIN_ELAPSED_S``), and an estimate that has run out while the work
is not done is withdrawn rather than shown as "0:00". A rate cell's schedule has a known end, which
is used instead. Across cells nothing is extrapolated: cells differ in cost by orders of magnitude
(b=1 t=16 against b=128 t=8192), so the time left for a grid comes only from the same cell measured
in an earlier repeat (``grid_left_s``); the console once said "ETA 0:13" with 45 s left, by spreading
the small first cells' time over the big ones.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from embed_bench.core.contract import RUN_FILES

MIN_SHARE = 0.05  # of the work done before its rate is extrapolated
MIN_ELAPSED_S = 3.0  # of the phase before its rate is extrapolated
PROGRESS_JSON = RUN_FILES.progress_json  # in the run directory, rewritten by the master each second

PREPARING = "preparing"
RUNNING = "running"
FINISHED = "finished"


def estimate_left_s(done: int, planned: int | None, elapsed_s: float) -> float | None:
    """Seconds left for ``planned - done`` more units at the rate so far, or None when the evidence
    is too thin: nothing planned, too little done (< ``MIN_SHARE``) or too short a time."""
    if planned is None or planned <= 0 or done <= 0 or elapsed_s < MIN_ELAPSED_S:
        return None
    if done >= planned:
        return 0.0
    if done < MIN_SHARE * planned:
        return None
    return elapsed_s / done * (planned - done)


@dataclass(frozen=True)
class ProcessPreparation:
    """One load-generating process's preparation of a cell, as it last reported it."""

    built: int
    planned: int
    started_at: float  # wall clock, on that process
    updated_at: float

    @property
    def left_s(self) -> float | None:
        return estimate_left_s(self.built, self.planned, self.updated_at - self.started_at)


def preparation_left_s(processes: Mapping[str, ProcessPreparation], expected: int) -> float | None:
    """Seconds until the slowest process has built its share (they build in parallel), as of each
    one's last report; None until every expected process reported enough to extrapolate."""
    if expected <= 0 or len(processes) < expected:
        return None
    lefts = [process.left_s for process in processes.values()]
    if any(left is None for left in lefts):
        return None
    reported = max(process.updated_at for process in processes.values())
    return max(
        left + process.updated_at - reported  # type: ignore[operator]
        for left, process in zip(lefts, processes.values(), strict=True)
    )


@dataclass(frozen=True)
class RunProgress:
    """Where a run stands, as the grid walker saw it at ``updated_at`` (wall clock)."""

    step: int  # 1-based: the cell's place in the walk, repeats included
    steps: int | None  # None while a capacity search adds steps as it goes
    cell: str
    repeat: int
    phase: str  # PREPARING, RUNNING or FINISHED
    run_started_at: float
    phase_started_at: float
    updated_at: float
    payloads_built: int = 0
    payloads_planned: int | None = None  # None until every process said how many it builds
    requests_done: int = 0
    requests_planned: int | None = None  # None for a timed cell: it sends until its time is up
    left_s: float | None = None  # the current phase's time left as of updated_at; None: no estimate
    processes: int = 0
    processes_reporting: int = 0

    def elapsed_s(self, now: float) -> float:
        """Time in the current phase."""
        return max(0.0, now - self.phase_started_at)

    def left_at(self, now: float) -> float | None:
        """The estimate, aged to ``now``; withdrawn (None) once it ran out with work still left."""
        if self.left_s is None:
            return None
        left = self.left_s - max(0.0, now - self.updated_at)
        return left if left > 0 else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunProgress:
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in data.items() if key in known})


def clock(seconds: float) -> str:
    """``1:05``, ``1:02:03``."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _of(done: int, planned: int | None) -> str:
    if planned is None:
        return f"{done:,}"
    share = f" ({100.0 * done / planned:.0f}%)" if planned else ""
    return f"{done:,}/{planned:,}{share}"


@dataclass(frozen=True)
class ProgressLine:
    """The parts of one progress line; rendered plain (logs, pipes) or styled (a terminal)."""

    where: str  # "cell 3/12 b=128 t=8192 c=8 (repeat 2)"
    phase: str
    work: str  # "payloads 123/600 (20%)" or "requests 40/80 (50%)"
    done: int
    planned: int | None
    elapsed: str
    left: str | None  # "about 6:40 left", or None: no estimate

    @property
    def plain(self) -> str:
        left = f", {self.left}" if self.left else ""
        return f"{self.where}: {self.phase}, {self.work}, {self.elapsed} elapsed{left}"


def progress_line(progress: RunProgress, now: float) -> ProgressLine:
    where = f"cell {progress.step}" + (f"/{progress.steps}" if progress.steps else "") + f" {progress.cell}"
    if progress.repeat:
        where += f" (repeat {progress.repeat + 1})"
    if progress.phase == PREPARING:
        done, planned, noun = progress.payloads_built, progress.payloads_planned, "payloads built"
        if progress.processes > 1:
            noun += f" on {progress.processes_reporting}/{progress.processes} processes"
    else:
        done, planned, noun = progress.requests_done, progress.requests_planned, "requests done"
    left = progress.left_at(now)
    return ProgressLine(
        where=where,
        phase=progress.phase,
        work=f"{noun} {_of(done, planned)}",
        done=done,
        planned=planned,
        elapsed=clock(progress.elapsed_s(now)),
        left=f"about {clock(left)} left" if left is not None else None,
    )


def write_progress(run_dir: Path, progress: RunProgress) -> None:
    """Rewrite ``progress.json`` atomically (a reader never sees half of it)."""
    path = run_dir / PROGRESS_JSON
    temporary = run_dir / f".{PROGRESS_JSON}.tmp"
    temporary.write_text(json.dumps(progress.to_json()) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def read_progress(run_dir: Path) -> RunProgress | None:
    """The last progress the master wrote, or None: none yet, or a file that is not one (the reader
    goes on without it; the run's outcome never depends on this file)."""
    try:
        data = json.loads((run_dir / PROGRESS_JSON).read_text(encoding="utf-8"))
        return RunProgress.from_json(data) if isinstance(data, dict) else None
    except (OSError, ValueError, TypeError):
        return None


def grid_left_s(
    steps: Sequence[tuple[str, int]], done: int, measured: Mapping[tuple[str, int], float]
) -> float | None:
    """Seconds left for ``steps[done:]`` (cell, repeat), from the same cell's wall time in an earlier
    repeat; None when any step left has no such twin (a first walk: cells are not alike)."""
    total = 0.0
    for cell, repeat in steps[done:]:
        twins = [
            seconds for (name, earlier), seconds in measured.items() if name == cell and earlier < repeat
        ]
        if not twins:
            return None
        total += sum(twins) / len(twins)
    return total


__all__ = [
    "FINISHED",
    "PREPARING",
    "PROGRESS_JSON",
    "RUNNING",
    "ProcessPreparation",
    "ProgressLine",
    "RunProgress",
    "clock",
    "estimate_left_s",
    "grid_left_s",
    "preparation_left_s",
    "progress_line",
    "read_progress",
    "write_progress",
]
