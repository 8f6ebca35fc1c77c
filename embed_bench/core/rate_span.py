"""The span a rate cell's per-second figures are over: one definition for the capacity search's
figures (``capacity.json``, then run.json) and the report's (``reports.metrics.rates``).

A rate cell offers requests at planned times from its start, the instant its schedule starts on every
load generator (``cells.csv`` ``start``). Its offered rate and its goodput (successful requests, and
their client-counted tokens, per second) are over its *arrival span*: from that start to the last
planned arrival of its measured requests. The capacity search once divided by the step's nominal
duration instead, while the report used the span, so one capacity read 3,264 tokens/s in run.json and
3,282 in the report; both now read the span. (The span ends at the last arrival, so it is shorter than
the nominal duration by about one gap between arrivals: about 1/N of it for a cell of N requests.)
"""

from __future__ import annotations


def arrival_span_s(start_s: float | None, first_planned_s: float, last_planned_s: float) -> float | None:
    """Seconds from the cell's start (unknown: its first planned arrival) to its last planned
    arrival; None when that is not positive (a single arrival at the start)."""
    start = first_planned_s if start_s is None else start_s
    span = last_planned_s - start
    return span if span > 0 else None
