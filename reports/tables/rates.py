"""The report's sections for rate cells (open loop) and capacity searches.

One row per rate cell and run (runs one after another), a mix's shapes right beneath its whole-cell
row, so the per-shape figures read against the cell's. Closed-loop runs never appear here.
"""

from __future__ import annotations

from collections.abc import Sequence

from reports.metrics.rates import LATE_LAG_MS, WHOLE_CELL, RateCapacity, RateFigures, RateRun
from reports.metrics.records import PERCENTILES, LatencyDistribution, percentile_label
from reports.tables.base import MISSING, Section, Table, fmt
from reports.tables.records import THIN, THIN_NOTE
from reports.tables.traffic import traffic_section

RATE_DEFINITIONS = (
    "asked: the request rate the cell was given (its name, r=...); offered: requests due (sent + dropped) "
    "over the cell's arrival span, from its start to its last planned arrival; achieved: requests sent "
    "over the span to the last send; goodput: successful requests (and their client-counted tokens) "
    "over the arrival span.",
    "Latency counts from each request's planned send time (coordinated-omission safe): a request that "
    "waited for a free user, or arrived during a stall, carries the wait. Percentiles are exact, over "
    "the requests sent.",
    f"dropped: due but never sent (no free user within the bound), counted as failures; late: sent more "
    f"than {LATE_LAG_MS:g} ms after the planned time; lag: sent - planned. Success % is over the requests "
    "offered.",
    "A mix cell's shapes follow its whole-cell row (shape b=.. t=..), each with its own figures.",
    THIN_NOTE,
)


def _cell_label(figures: RateFigures) -> str:
    return figures.cell + (f" (repeat {figures.repeat + 1})" if figures.repeat else "")


def _rows_in_order(run: RateRun) -> list[RateFigures]:
    """Each whole cell, then the shapes of its mix."""
    rows = []
    for cell in run.cells:
        rows.append(cell)
        rows += [shape for shape in run.shapes if (shape.cell, shape.repeat) == (cell.cell, cell.repeat)]
    return rows


def _asked(figures: RateFigures) -> str:
    return f"{figures.request_rate_per_s:g}" if figures.shape == WHOLE_CELL else MISSING


def _ms(distribution: LatencyDistribution, percentile: float) -> str:
    return fmt(distribution.at(percentile), ",.0f") + (THIN if distribution.thin(percentile) else "")


def rate_load_table(runs: Sequence[RateRun]) -> Table:
    header = (
        "run",
        "cell",
        "shape",
        "asked /s",
        "offered /s",
        "achieved /s",
        "goodput /s",
        "goodput tokens/s",
        "due",
        "dropped",
        "late",
        "lag p50 (ms)",
        "lag p99 (ms)",
        "lag max (ms)",
        "success %",
    )
    rows = tuple(
        (
            run.label,
            _cell_label(figures),
            figures.shape,
            _asked(figures),
            fmt(figures.offered_rate_per_s, ",.2f"),
            fmt(figures.achieved_rate_per_s, ",.2f"),
            fmt(figures.goodput_requests_per_s, ",.2f"),
            fmt(figures.goodput_tokens_per_s, ",.0f"),
            f"{figures.offered:,}",
            f"{figures.dropped:,}",
            f"{figures.late:,}",
            fmt(figures.lag.p50_ms, ",.1f"),
            fmt(figures.lag.p99_ms, ",.1f"),
            fmt(figures.lag.max_ms, ",.1f"),
            f"{figures.success_pct:.2f}",
        )
        for run in runs
        for figures in _rows_in_order(run)
    )
    return Table(
        "rate_load",
        "Offered and achieved rate",
        "per rate cell: the load it asked for, offered and achieved; dropped and late requests",
        header,
        rows,
    )


def rate_latency_table(runs: Sequence[RateRun]) -> Table:
    header = (
        "run",
        "cell",
        "shape",
        "asked /s",
        "requests",
        *(f"{percentile_label(p)} (ms)" for p in PERCENTILES),
        "max (ms)",
        "meets target",
    )

    def meets(run: RateRun, figures: RateFigures) -> str:
        if run.target is None or figures.shape != WHOLE_CELL:
            return MISSING
        return "yes" if figures.meets(run.target) else "no"

    rows = tuple(
        (
            run.label,
            _cell_label(figures),
            figures.shape,
            _asked(figures),
            f"{figures.latency.count:,}",
            *(_ms(figures.latency, p) for p in PERCENTILES),
            fmt(figures.latency.max_ms, ",.0f"),
            meets(run, figures),
        )
        for run in runs
        for figures in _rows_in_order(run)
    )
    return Table(
        "rate_latency",
        "Latency against offered load",
        "exact percentiles from the planned send time, per rate cell (and per shape of a mix)",
        header,
        rows,
    )


def _interval(capacity: RateCapacity) -> str:
    """``lower-upper``; ``at least lower`` when no rate failed."""
    upper = capacity.upper_requests_per_s
    if upper is None:
        return f"at least {capacity.lower_requests_per_s:,.2f}"
    return f"{capacity.lower_requests_per_s:,.2f}-{upper:,.2f}"


def capacity_table(runs: Sequence[RateRun]) -> Table | None:
    searched = [run for run in runs if run.capacity is not None]
    if not searched:
        return None
    header = (
        "run",
        "shape or mix",
        "target",
        "capacity (requests/s)",
        "95% interval (requests/s)",
        "capacity (tokens/s)",
        "at the lower bound (tokens/s)",
        "lowest failing rate /s",
        "straddles the target (/s)",
        "cells",
        "run.json capacity (requests/s)",
    )
    rows = []
    for run in searched:
        capacity = run.capacity
        assert capacity is not None
        rows.append(
            (
                run.label,
                capacity.series,
                capacity.target.describe(),
                f"{capacity.capacity_requests_per_s:,.2f}"
                if capacity.capacity_requests_per_s
                else "none met it",
                _interval(capacity),
                fmt(capacity.capacity_tokens_per_s, ",.0f"),
                fmt(capacity.lower_tokens_per_s, ",.0f"),
                fmt(capacity.lowest_failing_rate_per_s, ",.2f"),
                ", ".join(f"{rate:,.2f}" for rate in capacity.straddling_rates) or MISSING,
                str(capacity.steps),
                fmt(capacity.reported_requests_per_s, ",.2f"),
            )
        )
    return Table(
        "capacity",
        "Capacity at the target",
        "the highest offered rate that met the target, below the lowest that did not, and its 95% "
        "interval: from the highest rate that passes confidently to the lowest from which every rate "
        "upwards fails",
        header,
        tuple(rows),
    )


def rate_alerts(runs: Sequence[RateRun]) -> tuple[str, ...]:
    """Rate cells whose records do not match their counts, or that lost a worker: their figures
    rest on a subset (or mix runs)."""
    return tuple(f"{run.label}: {alert}" for run in runs for alert in run.alerts)


def rate_sections(runs: Sequence[RateRun]) -> tuple[Section, ...]:
    """The open-loop sections, empty when no run has rate cells."""
    if not runs:
        return ()
    sections = [
        Section(
            "Rate cells (open loop)",
            alerts=rate_alerts(runs),
            tables=(rate_load_table(runs), rate_latency_table(runs)),
            bullets=(*RATE_DEFINITIONS, *(f"{run.label}: {note}" for run in runs for note in run.notes)),
            plots=("hockey_stick", "hockey_stick_shapes", "offered_vs_achieved"),
        )
    ]
    traffic = traffic_section(runs)
    if traffic is not None:
        sections.append(traffic)
    table = capacity_table(runs)
    if table is not None:
        sections.append(
            Section(
                "Capacity at the target",
                text="Recomputed from each capacity search's cells as the search judged them (nearest-rank "
                "p95 over the requests sent, success over the requests offered); a pass above a failure "
                "(noise near the knee) is not believed. Goodput: tokens of successful requests per second "
                "of the passing cell. The 95% interval pools the cells at each rate (the search's confirmation "
                "steps repeat its answer and 0.85x and 1.15x of it) and bounds their p95 by order statistics "
                "(no distribution assumed): a rate passes confidently when the bound above is within the "
                "target, fails confidently when the bound below exceeds it (or success fails), and "
                "straddles the target otherwise; the lower bound is the rate to provision at, the upper bound the "
                "lowest rate from which every rate tried upwards fails (a pass above a failure widens it).",
                tables=(table,),
            )
        )
    return tuple(sections)
