"""The cold-start check's section (``reports.metrics.cold_start``): the walks flagged, and what was
checked; the flags themselves also go to the report's first screen."""

from __future__ import annotations

from collections.abc import Sequence

from reports.metrics.cold_start import COLD_START_RATIO, MIN_REQUESTS, RunWarmth, cold_start_alerts
from reports.tables.base import Section, Table

COLD_START_TITLE = "Cold start check"
DEFINITION = (
    "each walk of a cell (a cell and repeat): the median latency of the first tenth of its successful "
    "measured requests, by send time (open loop: from the planned send time), against that of the last "
    f"tenth; flagged when the first is more than {COLD_START_RATIO:g}x the last (warm servers on a shared "
    f"2-core machine gave up to 3.5x); not checked below {MIN_REQUESTS} successful requests or where the "
    "requests vary in shape"
)


def _summary(run: RunWarmth) -> str:
    flagged = len(run.flagged)
    line = f"{run.label}: {len(run.checked)} walk(s) checked, {flagged} flagged"
    if run.not_checked:
        reasons: dict[str, list[str]] = {}
        for walk, why in run.not_checked:
            reasons.setdefault(why, []).append(walk)
        line += "; not checked: " + "; ".join(
            f"{len(walks)} with {why} ({', '.join(walks)})" for why, walks in reasons.items()
        )
    return line


def cold_start_section(runs: Sequence[RunWarmth]) -> Section | None:
    """None when no run has request records (nothing to check)."""
    if not runs:
        return None
    rows = tuple(
        (
            run.label,
            check.cell,
            f"{check.requests:,}",
            f"{check.first_median_ms:,.0f}",
            f"{check.last_median_ms:,.0f}",
            f"{check.ratio:.1f}",
        )
        for run in runs
        for check in run.flagged
    )
    tables = (
        Table(
            "cold_start",
            "Cells whose first requests were much slower than their last",
            DEFINITION,
            (
                "run",
                "cell",
                "successful requests",
                "first tenth median (ms)",
                "last tenth median (ms)",
                "first / last",
            ),
            rows,
        ),
    )
    text = (
        "Cells whose first requests were much slower than their last: a cold server, whose figures mix "
        "its cold and warm states."
        if rows
        else f"No cell's first requests were more than {COLD_START_RATIO:g}x slower than its last ones."
    )
    return Section(
        COLD_START_TITLE,
        text=text,
        alerts=cold_start_alerts(runs),
        tables=tables if rows else (),
        bullets=(f"Definition: {DEFINITION}.", *(_summary(run) for run in runs)),
    )
