"""A capacity search driven by the grid walk on the master (``embed_bench.load.shape.GridWalk``).

The walk appends one rate cell per step; the master's request recorder hands every row it collects
to :meth:`CapacityRun.on_rows`, which keeps the measured rows of the search's own steps; once a step's
counts are final, :meth:`CapacityRun.measured` turns its rows into a ``StepResult`` (p95 from the
planned send times over the sent requests, success over all offered: dropped ones fail) and feeds
``embed_bench.core.capacity.CapacitySearch``. The answer goes to ``capacity.json`` in the run directory,
which ``embed-bench run`` copies into ``run.json`` (``slo`` and ``capacity``).

No Locust import: tests drive it with plain rows.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from embed_bench.core.capacity import CapacityResult, CapacitySearch, StepResult
from embed_bench.core.cells import CapacitySpec, round_rate
from embed_bench.core.contract import RUN_FILES, RateCell

logger = logging.getLogger(__name__)

# Fields of a request record (REQUEST_RECORD_COLUMNS) that a capacity step reads.
_CELL, _WARMUP, _TOKENS, _OK, _LATENCY, _DROPPED = 0, 2, 9, 12, 17, 19


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


class CapacityRun:
    """A capacity search driven by the walk: appends each next step and reads each step's figures
    from the request records (latency from the planned send time; dropped requests fail)."""

    def __init__(self, spec: CapacitySpec, run_dir: Path | None) -> None:
        self.spec = spec
        self.search: CapacitySearch = spec.search()
        self.path = run_dir / RUN_FILES.capacity_json if run_dir is not None else None
        self.steps: dict[str, RateCell] = {}
        self.rows: dict[str, list[tuple]] = {}
        self.finished = False

    def next_step(self) -> RateCell | None:
        rate = None if self.finished else self.search.next_rate()
        if rate is None:
            return None
        cell = self.spec.step(rate)
        self.steps[cell.name], self.rows[cell.name] = cell, []
        return cell

    def on_rows(self, rows: list[tuple]) -> None:
        for row in rows:
            kept = self.rows.get(row[_CELL])
            if kept is not None and not row[_WARMUP]:
                kept.append(row)

    def measured(self, name: str) -> bool:
        """Record the step's result; True when it was a step of this search."""
        cell = self.steps.get(name)
        rate = self.search.next_rate()
        if cell is None or rate is None or round_rate(rate) != cell.request_rate:
            return False
        rows = self.rows.pop(name)
        if not rows:  # cut before anything was due, or its records never arrived: nothing to learn
            logger.error("capacity step %s has no request records; the search ends here", name)
            return False
        sent = [row for row in rows if not row[_DROPPED]]
        step = StepResult.from_requests(
            rate,
            cell.duration_s,
            [row[_LATENCY] for row in sent],
            [bool(row[_OK]) for row in sent],
            [row[_TOKENS] for row in sent],
            offered=len(rows),
        )
        self.search.record(step)
        logger.info(
            "capacity step %s: p95 %.1f ms, %.2f%% ok of %d offered: %s",
            name,
            step.p95_latency_ms,
            step.success_pct,
            len(rows),
            "meets the target" if step.meets(self.search.target) else "misses the target",
        )
        return True

    def finish(self) -> CapacityResult:
        self.finished = True
        result = self.search.result
        logger.info("capacity: %s", result.describe())
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.record(result), indent=2) + "\n", encoding="utf-8")
        return result

    def record(self, result: CapacityResult) -> dict:
        """``capacity.json``: what run.json's ``slo`` and ``capacity`` keys hold."""
        target = result.target
        return {
            "slo": {"p95_ms": target.p95_latency_ms, "success_pct": target.success_pct},
            "capacity": {
                "requests_per_s": round_rate(result.capacity_requests_per_s),
                "tokens_per_s": result.capacity_tokens_per_s,
                "lowest_failing_rate_per_s": (
                    round_rate(result.lowest_failing_rate_per_s)
                    if result.lowest_failing_rate_per_s is not None
                    else None
                ),
                "converged": result.converged,
                "at_rate_limit": result.at_rate_limit,
                "description": result.describe(),
                "search": self.spec.describe(),
                "steps": [
                    {
                        "cell": self.spec.step(step.rate_per_s).name,
                        "rate_per_s": round_rate(step.rate_per_s),
                        "p95_latency_ms": _finite(step.p95_latency_ms),
                        "success_pct": step.success_pct,
                        "goodput_tokens_per_s": step.goodput_tokens_per_s,
                        "meets": step.meets(target),
                    }
                    for step in result.steps
                ],
            },
        }
