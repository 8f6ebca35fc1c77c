"""A capacity search driven by the grid walk on the master (``embed_bench.load.shape.GridWalk``).

The walk appends one rate cell per step; the master's request recorder hands every row it collects
to :meth:`CapacityRun.on_rows`, which keeps the measured rows of the search's own steps; once a step's
counts are final, :meth:`CapacityRun.measured` turns its rows into a ``StepResult`` (p95 from the
planned send times over the sent requests, success over all offered: dropped ones fail) and feeds
``embed_bench.core.capacity.CapacitySearch``. The answer goes to ``capacity.json`` in the run directory,
which ``embed-bench run`` copies into ``run.json`` (``slo`` and ``capacity``).

Once the bracket has converged, the search asks for confirmation steps (0.85x, 1x, 1.15x of its answer,
twice): each is a rate cell like a search step, but lasts long enough for 200 requests
(``confirmation_duration_s``: no 60 s cap, at most 10 minutes). A rate tried twice runs as a repeat of
its cell (the same name, ``repeat`` 1, 2, ... in the records and cells.csv), so the report tells the
steps apart. A step whose arrivals drew none (Poisson arrivals at a low rate over a short step: at a
mean of 4, one step in 55) gives no evidence, so it runs again as a repeat, twice as long, up to
``MAX_EMPTY_STRETCH`` times its duration; only then does the search end, saying how to lengthen it.
``capacity.json`` keeps the search's steps under ``steps`` (they give the point estimate),
the confirmation steps under ``confirmation``, and the interval (``interval``: the bounds, the rates
that straddle the target, each rate's pooled p95 and its 95% bounds) beside them; a run.json written
before the interval existed simply lacks those keys.

While the search runs, ``capacity.json`` holds only ``progress``: the target and each step measured so
far (cell, repeat, p95, success, met or missed, confirmation or not), rewritten after every step, so
``embed-bench run`` can print each step's verdict as it ends; ``finish`` replaces it with the answer.

No Locust import: tests drive it with plain rows.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

from embed_bench.core.capacity import (
    CapacityResult,
    CapacitySearch,
    StepResult,
    confirmation_duration_s,
)
from embed_bench.core.cells import CapacitySpec, round_rate
from embed_bench.core.contract import REQUEST_RECORD_COLUMNS, RUN_FILES, RateCell
from embed_bench.core.rate_span import arrival_span_s

logger = logging.getLogger(__name__)

# Fields of a request record (REQUEST_RECORD_COLUMNS) that a capacity step reads.
_CELL, _REPEAT, _WARMUP, _TOKENS, _OK, _LATENCY, _DROPPED = 0, 1, 2, 9, 12, 17, 19
_PLANNED = REQUEST_RECORD_COLUMNS.index("planned_at")

# A step that drew no arrival runs again at 2x, 4x, 8x its duration before the search gives up.
MAX_EMPTY_STRETCH = 8.0


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


class CapacityRun:
    """A capacity search driven by the walk: appends each next step and reads each step's figures
    from the request records (latency from the planned send time; dropped requests fail)."""

    def __init__(self, spec: CapacitySpec, run_dir: Path | None) -> None:
        self.spec = spec
        self.search: CapacitySearch = spec.search()
        self.path = run_dir / RUN_FILES.capacity_json if run_dir is not None else None
        self.steps: dict[tuple[str, int], RateCell] = {}
        self.rows: dict[tuple[str, int], list[tuple]] = {}
        self.runs: dict[str, int] = {}  # how many steps ran under each cell name
        self.repeat = 0  # the repeat of the step next_step() proposed last
        self.finished = False
        self.progress: list[dict] = []  # capacity.json's ``progress`` while the search runs
        self.stretch: dict[float, float] = {}  # a rate's step duration factor after empty steps

    def step_cell(self, rate: float, confirming: bool) -> RateCell:
        """The rate cell of a step: a search step as the spec sizes it, a confirmation step long
        enough for 200 requests (at most 10 minutes)."""
        cell = self.spec.step(rate)
        factor = self.stretch.get(cell.request_rate, 1.0)
        if factor != 1.0:
            cell = dataclasses.replace(cell, duration_s=cell.duration_s * factor)
        if confirming:
            cell = dataclasses.replace(cell, duration_s=confirmation_duration_s(rate, cell.duration_s))
        return cell

    def next_step(self) -> RateCell | None:
        rate = None if self.finished else self.search.next_rate()
        if rate is None:
            return None
        cell = self.step_cell(rate, self.search.confirming)
        self.repeat = self.runs.get(cell.name, 0)
        self.runs[cell.name] = self.repeat + 1
        self.steps[cell.name, self.repeat], self.rows[cell.name, self.repeat] = cell, []
        return cell

    def on_rows(self, rows: list[tuple]) -> None:
        for row in rows:
            kept = self.rows.get((row[_CELL], row[_REPEAT]))
            if kept is not None and not row[_WARMUP]:
                kept.append(row)

    def measured(
        self, name: str, repeat: int = 0, start_s: float | None = None, planned: int | None = None
    ) -> bool:
        """Record the step's result; True when it was a step of this search (or an empty one that runs
        again). ``start_s``: the step's start (its cells.csv ``start``); its goodput is over its arrival
        span from there, as the report has it (``embed_bench.core.rate_span``; a step of one request:
        its nominal duration). ``planned``: the arrivals the step drew (cells.csv ``planned``); 0 means
        nothing was due, so the step runs again, longer."""
        cell = self.steps.get((name, repeat))
        rate = self.search.next_rate()
        if cell is None or rate is None or round_rate(rate) != cell.request_rate:
            return False
        rows = self.rows.pop((name, repeat), [])
        if not rows:
            if planned == 0:  # its arrivals drew none: no evidence either way
                return self._run_longer(cell)
            # its records never arrived: nothing to learn
            logger.error("capacity step %s has no request records; the search ends here", name)
            return False
        sent = [row for row in rows if not row[_DROPPED]]
        planned = [row[_PLANNED] for row in rows]
        span = arrival_span_s(start_s, min(planned), max(planned))
        step = StepResult.from_requests(
            rate,
            span if span is not None else cell.duration_s,
            [row[_LATENCY] for row in sent],
            [bool(row[_OK]) for row in sent],
            [row[_TOKENS] for row in sent],
            offered=len(rows),
        )
        confirming = self.search.confirming
        self.search.record(step)
        self._write_progress(step, name, repeat, confirming)
        low, high = step.p95_bounds_ms
        logger.info(
            "capacity %s %s: p95 %.1f ms (95%% interval %.1f-%.1f ms), %.2f%% ok of %d offered: %s",
            "confirmation step" if confirming else "step",
            name,
            step.p95_latency_ms,
            low,
            high,
            step.success_pct,
            len(rows),
            "meets the target" if step.meets(self.search.target) else "misses the target",
        )
        return True

    def _run_longer(self, cell: RateCell) -> bool:
        """A step that drew no arrival: the next step is the same rate for twice as long (True), or,
        past ``MAX_EMPTY_STRETCH``, the search ends (False) saying what to change."""
        factor = self.stretch.get(cell.request_rate, 1.0) * 2
        if factor > MAX_EMPTY_STRETCH:
            logger.error(
                "capacity step %s drew no arrival in %g s, after runs of %g times its length; the search "
                "ends here: lengthen --capacity-step-s or raise --capacity-start-rate",
                cell.name,
                cell.duration_s,
                MAX_EMPTY_STRETCH,
            )
            return False
        self.stretch[cell.request_rate] = factor
        logger.warning(
            "capacity step %s drew no arrival in %g s (Poisson arrivals, %.1f expected): it runs again "
            "for %g s",
            cell.name,
            cell.duration_s,
            cell.request_rate * cell.duration_s,
            cell.duration_s * 2,
        )
        return True

    def _write_progress(self, step: StepResult, name: str, repeat: int, confirming: bool) -> None:
        """capacity.json's ``progress`` with this step added (what the console prints per step)."""
        target = self.search.target
        self.progress.append(
            {**self._step(step, repeat), "cell": name, "confirmation": confirming, "offered": step.offered}
        )
        self._write(
            {
                "progress": {
                    "slo": {"p95_ms": target.p95_latency_ms, "success_pct": target.success_pct},
                    "steps": self.progress,
                }
            }
        )

    def _write(self, document: dict) -> None:
        """Replace capacity.json at once (a reader never sees half a file)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        temporary.replace(self.path)

    def finish(self) -> CapacityResult:
        self.finished = True
        result = self.search.result
        logger.info("capacity: %s", result.describe())
        self._write(self.record(result))
        return result

    def _step(self, step: StepResult, repeat: int) -> dict:
        low, high = step.p95_bounds_ms
        return {
            "cell": self.spec.step(step.rate_per_s).name,
            "repeat": repeat,
            "rate_per_s": round_rate(step.rate_per_s),
            "p95_latency_ms": _finite(step.p95_latency_ms),
            "p95_low_ms": _finite(low),
            "p95_high_ms": _finite(high),
            "success_pct": step.success_pct,
            "goodput_tokens_per_s": step.goodput_tokens_per_s,
            "meets": step.meets(self.search.target),
        }

    def record(self, result: CapacityResult) -> dict:
        """``capacity.json``: what run.json's ``slo`` and ``capacity`` keys hold."""
        target = result.target
        # Each step's repeat as it ran, from the progress measured() kept in the same order (a step that
        # drew no arrival took a repeat number too, so counting steps per name would be off).
        measured = (*result.steps, *result.confirmation_steps)
        repeats = [entry["repeat"] for entry in self.progress]
        steps = [self._step(step, repeat) for step, repeat in zip(measured, repeats, strict=True)]
        interval = result.interval
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
                "steps": steps[: len(result.steps)],
                "confirmation": steps[len(result.steps) :],
                "interval": None
                if interval is None
                else {
                    "confidence": 0.95,
                    "lower_requests_per_s": round_rate(interval.lower_requests_per_s),
                    "lower_tokens_per_s": interval.lower_tokens_per_s,
                    "upper_requests_per_s": (
                        round_rate(interval.upper_requests_per_s)
                        if interval.upper_requests_per_s is not None
                        else None
                    ),
                    "straddling_rates_per_s": [round_rate(rate) for rate in interval.straddling_rates],
                    "rates": [
                        {
                            "rate_per_s": round_rate(rate.rate_per_s),
                            "steps": rate.steps,
                            "requests": rate.requests,
                            "p95_latency_ms": _finite(rate.p95_latency_ms),
                            "p95_low_ms": _finite(rate.p95_low_ms),
                            "p95_high_ms": _finite(rate.p95_high_ms),
                            "success_pct": rate.success_pct,
                            "verdict": rate.verdict,
                        }
                        for rate in interval.rates
                    ],
                },
            },
        }
