"""Figures of rate cells (open loop) and each run's capacity at its target, from the records.

A rate cell offers requests at planned arrival times whether or not earlier ones returned, so its
figures differ from a closed-loop cell's:

- latency counts from the planned send time (``latency_ms`` of the records), so a stall shows in
  every request that arrived during it (no coordinated omission); percentiles are exact
  (linear interpolation, as everywhere in the report);
- the offered rate is the requests due (sent + dropped) over the cell's arrival span (from its
  ``cells.csv`` start, or its first arrival, to its last arrival); the achieved rate the requests
  sent over the span to the last send; goodput the successful requests (and their client-counted
  tokens) over the arrival span;
- success is counted over the requests *offered*: a dropped request (never sent, no free user
  within the bound) is a failure, so a load generator that cannot keep up never looks good;
- a request is late when the load generator sent it more than ``LATE_LAG_MS`` after its planned
  time (its lag; a few ms is the scheduler's own jitter, see ``benchmarks/loadgen.py --schedule``).

A mix cell (``r=20 mix=queries``) gets the same figures for the whole cell and for each shape in it.

The capacity is recomputed from the cells, as the search judged its steps
(``embed_bench.core.capacity.StepResult``: nearest-rank p95 over the sent requests, success over the
offered): the highest offered rate that met the target below the lowest one that did not (a pass
above a failure, noise near the knee, is not believed). The target is run.json's ``slo``. The
search's confirmation steps (run.json ``capacity.confirmation``: cell and repeat) do not move that
point estimate, as they did not in the search.

Its 95% interval comes from every cell of the searched series, search and confirmation alike, through
the search's own rule (``embed_bench.core.capacity.capacity_interval``: the repeats at one rate pooled,
a distribution-free interval of their p95 from order statistics; a rate passes confidently, fails
confidently or straddles the target): ``lower_*`` is the highest rate that passes confidently with
every lower rate passing, ``upper_requests_per_s`` the lowest from which every rate upwards fails
(confidently, else on its pooled p95), ``straddling_rates`` those the measurements cannot place.
Provision at ``lower_*``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from embed_bench.core.capacity import StepResult, Target, capacity_interval
from embed_bench.core.contract import RUN_FILES, parse_rate_cell_name
from embed_bench.core.rate_span import arrival_span_s
from reports.errors import ReportError
from reports.load.runs import RunData
from reports.metrics.record_counts import count_alerts
from reports.metrics.records import LatencyDistribution, latency_distribution
from reports.metrics.traffic import TrafficFigures, band_groups, traffic_figures, varied_lengths

LATE_LAG_MS = 10.0
WHOLE_CELL = "all"


@dataclass(frozen=True)
class RateFigures:
    """One rate cell (one repeat), whole or one shape of its mix."""

    cell: str  # the request name, e.g. "r=20 b=1 t=128"
    series: str  # the cell without its rate: "b=1 t=128" or "mix=queries"
    repeat: int
    shape: str  # WHOLE_CELL, or "b=1 t=32" within a mix
    request_rate_per_s: float  # the rate the cell asked for (its name)
    offered: int  # requests due: sent + dropped
    sent: int
    succeeded: int
    dropped: int
    late: int  # sent more than LATE_LAG_MS after their planned time
    offered_rate_per_s: float | None
    achieved_rate_per_s: float | None
    goodput_requests_per_s: float | None
    goodput_tokens_per_s: float | None
    success_pct: float  # succeeded / offered
    latency: LatencyDistribution  # from the planned send time, sent requests
    lag: LatencyDistribution  # sent_at - planned_at, sent requests
    p95_nearest_rank_ms: float  # the capacity search's p95 (inf when everything was dropped)
    latencies_ms: tuple[float, ...] = field(default=(), repr=False, compare=False)  # sent, sorted

    def meets(self, target: Target) -> bool:
        return self.step.meets(target)

    @property
    def step(self) -> StepResult:
        return StepResult(
            self.request_rate_per_s,
            self.p95_nearest_rank_ms,
            self.success_pct,
            self.goodput_tokens_per_s or 0.0,
            latencies_ms=self.latencies_ms,
            offered=self.offered,
        )


@dataclass(frozen=True)
class RateCapacity:
    """A run's capacity at its target, recomputed from its rate cells, beside run.json's own."""

    target: Target
    series: str  # the shape or mix searched, e.g. "b=1 t=128"
    capacity_requests_per_s: float  # 0 when no cell met the target
    capacity_tokens_per_s: float  # goodput of that cell
    lowest_failing_rate_per_s: float | None
    steps: int
    reported_requests_per_s: float | None  # run.json "capacity", None where absent
    reported_tokens_per_s: float | None
    lower_requests_per_s: float = 0.0  # the interval's lower bound: 0 when no rate passes confidently
    lower_tokens_per_s: float = 0.0  # goodput at the lower bound (its cells' mean)
    upper_requests_per_s: float | None = None  # None when no cell failed
    straddling_rates: tuple[float, ...] = ()  # rates whose p95 interval holds the target


@dataclass(frozen=True)
class RateRun:
    label: str
    directory: str
    cells: tuple[RateFigures, ...]  # whole cells, by series then rate
    shapes: tuple[RateFigures, ...]  # per shape, for mix cells only
    capacity: RateCapacity | None  # None without run.json "slo"
    notes: tuple[str, ...]
    traffic: TrafficFigures | None = None  # a trace or varied lengths: bands, shapes, SLO over time
    alerts: tuple[str, ...] = ()  # cells whose records miss or exceed their counts, workers lost

    @property
    def target(self) -> Target | None:
        return self.capacity.target if self.capacity else None


def _series(name: str) -> str:
    return name.strip().split(" ", 1)[1]


def _per_s(count: float, span_s: float | None) -> float | None:
    return count / span_s if span_s else None


def rate_figures(
    rows: pd.DataFrame,
    *,
    cell: str,
    repeat: int,
    shape: str,
    start_s: float | None,
    cell_rows: pd.DataFrame | None = None,
) -> RateFigures:
    """The figures of a cell's measured records (warm-ups left out by the caller). A shape of a mix
    passes its whole cell's rows as ``cell_rows``: its rates are over the cell's spans."""
    spans = rows if cell_rows is None else cell_rows
    sent = rows[~rows["dropped"]]
    ok = sent[sent["ok"]]
    start = start_s if start_s is not None else float(spans["planned_at"].min())
    # The capacity search's own goodput reads the same span (embed_bench.core.rate_span).
    arrival_span = arrival_span_s(start_s, float(spans["planned_at"].min()), float(spans["planned_at"].max()))
    sent_at = spans.loc[~spans["dropped"], "sent_at"]
    send_span = float(sent_at.max()) - start if len(sent_at) else 0.0
    latencies = sent["latency_ms"].to_numpy(dtype=float)
    ordered = np.sort(latencies[~np.isnan(latencies)])
    p95 = float(ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]) if len(ordered) else math.inf
    name = parse_rate_cell_name(cell)
    assert name is not None
    return RateFigures(
        cell=cell,
        series=_series(cell),
        repeat=repeat,
        shape=shape,
        request_rate_per_s=name.request_rate,
        offered=len(rows),
        sent=len(sent),
        succeeded=len(ok),
        dropped=int(rows["dropped"].sum()),
        late=int((sent["lag_ms"] > LATE_LAG_MS).sum()),
        offered_rate_per_s=_per_s(len(rows), arrival_span),
        achieved_rate_per_s=_per_s(len(sent), send_span if send_span > 0 else None),
        goodput_requests_per_s=_per_s(len(ok), arrival_span),
        goodput_tokens_per_s=_per_s(float(ok["tokens_client"].sum()), arrival_span),
        success_pct=100.0 * len(ok) / len(rows) if len(rows) else 0.0,
        latency=latency_distribution(latencies),
        lag=latency_distribution(sent["lag_ms"].to_numpy(dtype=float)),
        p95_nearest_rank_ms=p95,
        latencies_ms=tuple(float(value) for value in ordered),
    )


def _target(run: RunData) -> Target | None:
    slo = run.info.get("slo")
    if slo is None:
        return None
    try:
        return Target(float(slo["p95_ms"]), float(slo.get("success_pct", 99.9)))
    except (TypeError, KeyError, ValueError) as exc:
        raise ReportError(
            f"{run.directory}/{RUN_FILES.run_json}: slo must hold p95_ms (and success_pct), found {slo!r}"
        ) from exc


def _reported(run: RunData, *keys: str) -> float | None:
    """A figure of run.json's ``capacity``, under the first of ``keys`` it holds."""
    capacity = run.info.get("capacity")
    if not isinstance(capacity, dict):
        return None
    value = next((capacity[key] for key in keys if key in capacity), None)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def capacity_at(target: Target, cells: Sequence[RateFigures]) -> tuple[float, float, float | None]:
    """(capacity requests/s, its goodput tokens/s, the lowest failing rate) over whole cells."""
    fails = [cell.request_rate_per_s for cell in cells if not cell.meets(target)]
    lowest_fail = min(fails, default=None)
    passes = [
        cell
        for cell in cells
        if cell.meets(target) and (lowest_fail is None or cell.request_rate_per_s < lowest_fail)
    ]
    best = max(passes, key=lambda cell: cell.request_rate_per_s, default=None)
    if best is None:
        return 0.0, 0.0, lowest_fail
    return best.request_rate_per_s, best.goodput_tokens_per_s or 0.0, lowest_fail


def _confirmation_cells(run: RunData) -> set[tuple[str, int]]:
    """(cell, repeat) of the search's confirmation steps, from run.json (none in an older one)."""
    capacity = run.info.get("capacity")
    steps = capacity.get("confirmation") if isinstance(capacity, dict) else None
    if not isinstance(steps, list):
        return set()
    return {
        (str(step["cell"]), int(step.get("repeat", 0)))
        for step in steps
        if isinstance(step, dict) and "cell" in step
    }


def _searched_series(cells: Sequence[RateFigures]) -> str:
    """The capacity search's shape or mix: the series with the most cells (the first of equals)."""
    counts: dict[str, int] = {}
    for cell in cells:
        counts[cell.series] = counts.get(cell.series, 0) + 1
    return max(counts, key=lambda series: counts[series])


def _order(figures: RateFigures) -> tuple[str, float, int]:
    return figures.series, figures.request_rate_per_s, figures.repeat


def rate_run(run: RunData) -> RateRun | None:
    """The run's rate cells and capacity; None when it has no rate cell records."""
    records = run.records
    if records is None or records.rate is None:
        return None
    measured = records.rate[~records.rate["warmup"]]
    if measured.empty:
        return None
    starts = {(window.cell, window.repeat): window.start_s for window in run.rate_windows}
    cells, shapes = [], []
    for (cell, repeat), rows in measured.groupby(["cell", "repeat"], sort=False):
        start = starts.get((cell, int(repeat)))
        cells.append(rate_figures(rows, cell=cell, repeat=int(repeat), shape=WHOLE_CELL, start_s=start))
        name = parse_rate_cell_name(cell)
        if name is not None and name.mix_label is not None:
            for shape, part in _shape_groups(rows):
                shapes.append(
                    rate_figures(
                        part, cell=cell, repeat=int(repeat), shape=shape, start_s=start, cell_rows=rows
                    )
                )
    cells.sort(key=_order)
    shapes.sort(key=lambda figures: (*_order(figures), figures.shape))
    target = _target(run)
    notes = []
    capacity = None
    if target is not None:
        series = _searched_series(cells)
        searched = [cell for cell in cells if cell.series == series]
        if len(searched) < len(cells):
            notes.append(
                f"capacity from the {len(searched)} cells of {series} (the series with the most cells)"
            )
        confirming = _confirmation_cells(run)
        search = [cell for cell in searched if (cell.cell, cell.repeat) not in confirming]
        requests_per_s, tokens_per_s, lowest_fail = capacity_at(target, search or searched)
        interval = capacity_interval(target, [cell.step for cell in searched])
        if len(search) < len(searched) and interval.estimate_requests_per_s < requests_per_s:
            # confirmation steps contradict the search's answer: the pooled estimate (as the search has it)
            requests_per_s, tokens_per_s = interval.estimate_requests_per_s, interval.estimate_tokens_per_s
        capacity = RateCapacity(
            target,
            series,
            requests_per_s,
            tokens_per_s,
            lowest_fail,
            len(searched),
            _reported(run, "requests_per_s", "rate_rps"),
            _reported(run, "tokens_per_s", "goodput_tokens_per_s"),
            lower_requests_per_s=interval.lower_requests_per_s,
            lower_tokens_per_s=interval.lower_tokens_per_s,
            upper_requests_per_s=interval.upper_requests_per_s,
            straddling_rates=interval.straddling_rates,
        )
        reported = capacity.reported_requests_per_s
        if reported is not None and not math.isclose(reported, requests_per_s, rel_tol=1e-6):
            notes.append(
                f"run.json reports a capacity of {reported:g} requests/s; its rate cells' records give "
                f"{requests_per_s:g} (the report uses the records)"
            )
    dropped = sum(cell.dropped for cell in cells)
    if dropped:
        notes.append(f"{dropped} rate-cell request(s) were due but never sent: counted as failures")
    traffic = traffic_figures(measured, run.info)
    alerts = tuple(count_alerts(records.rate, run.rate_windows))
    return RateRun(
        run.label, str(run.directory), tuple(cells), tuple(shapes), capacity, tuple(notes), traffic, alerts
    )


def _shape_groups(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """A mix cell's rows by shape: ``b=1 t=128`` for fixed lengths; where passages vary in length (a
    distribution, a trace) by batch size and the power-of-two band of the longest passage,
    ``b=8 t=129-256``, so a trace of a thousand distinct lengths gives a handful of rows."""
    if not varied_lengths(rows):
        return [(f"b={b} t={t}", part) for (b, t), part in rows.groupby(["batch_size", "passage_tokens"])]
    return band_groups(rows)
