"""The report's first section when no workload is given: what can be answered, and what cannot.

With ``--workload`` the report opens with the decision (``reports.tables.decision``). Without it, no
cost answer can be given, and the first screen says so and why: it names what the answer needs, gives
each capacity search's answer with its interval, and then p50 and p95 latency and success for each
shape measured. Provenance (the runs table) and the study's ten summary metrics follow.
"""

from __future__ import annotations

from collections.abc import Sequence

from reports.cost.columns import RunColumn
from reports.metrics.rates import RateRun
from reports.tables.base import Section, Table, fmt

ANSWER_TITLE = "What this report answers"
NO_WORKLOAD = (
    "No cost answer yet: that needs your traffic (--workload: a request log, a daily profile, or "
    "tokens-per-day=...,peak-requests-per-s=...) and a capacity search of each option at your latency "
    "target (embed-bench run --grid capacity --slo-p95-ms MS)."
)


def _capacity_line(run: RateRun) -> str | None:
    capacity = run.capacity
    if capacity is None:
        return None
    upper = (
        f"{capacity.upper_requests_per_s:g}"
        if capacity.upper_requests_per_s is not None
        else "no failure seen"
    )
    interval = f"95% interval {capacity.lower_requests_per_s:g} to {upper} requests/s"
    if capacity.capacity_requests_per_s <= 0:  # "capacity 0 requests/s" would read as a measured zero
        return f"{run.label}: no rate tried met {capacity.target.describe()}; {interval}"
    return (
        f"{run.label}: capacity {capacity.capacity_requests_per_s:g} requests/s ({capacity.capacity_tokens_per_s:,.0f} tokens/s) "
        f"at {capacity.target.describe()}; {interval}"
    )


def _closed_rows(runs: Sequence[RunColumn]) -> list[tuple[str, ...]]:
    return [
        (
            run.label,
            cell.cell,
            f"{cell.request_count:,}",
            fmt(cell.success_rate_pct, ".1f"),
            fmt(cell.median_latency_ms, ",.0f"),
            fmt(cell.p95_latency_ms, ",.0f"),
            fmt(cell.throughput_tokens_per_s, ",.0f"),
        )
        for run in runs
        for cell in run.metrics.cells
    ]


def _rate_rows(runs: Sequence[RateRun]) -> list[tuple[str, ...]]:
    return [
        (
            run.label,
            cell.cell,
            f"{cell.offered:,}",
            fmt(cell.success_pct, ".1f"),
            fmt(cell.latency.at(50), ",.0f"),
            fmt(cell.latency.at(95), ",.0f"),
            fmt(cell.goodput_tokens_per_s, ",.0f"),
        )
        for run in runs
        for cell in run.cells
    ]


def answer_section(runs: Sequence[RunColumn], rate_runs: Sequence[RateRun]) -> Section:
    """The first section of a report without ``--workload``."""
    capacities = [line for line in map(_capacity_line, rate_runs) if line is not None]
    found = (" What the capacity searches found: " + "; ".join(capacities) + ".") if capacities else ""
    return Section(
        ANSWER_TITLE,
        text=NO_WORKLOAD + found,
        tables=(
            Table(
                "answer_shapes",
                "Latency and success per shape",
                "each cell measured: requests, success, p50 and p95 latency (ms; open loop: from the planned "
                "send time) and successful tokens per second",
                ("run", "cell", "requests", "success %", "p50 ms", "p95 ms", "tokens/s"),
                tuple(_closed_rows(runs) + _rate_rows(rate_runs)),
            ),
        ),
    )
