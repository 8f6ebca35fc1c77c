"""The report's sections in reading order: what every exporter renders, top to bottom.

Only the runs share rows; the reference study (``--compare-study``) gets a separate block right
after the summary (``study_block``). Sections that need per-request records appear only when a run
has them, and every figure says which token count it uses.
"""

from __future__ import annotations

from collections.abc import Sequence

from embed_bench.core.checks import CONNECTION_FAILURES
from reports.cost.columns import RunColumn
from reports.cost.headline import SUMMARY_METRICS
from reports.metrics.study import StudySystem, high_load_cells
from reports.metrics.token_counts import COUNT_DESCRIPTIONS
from reports.tables.base import (
    Section,
    Table,
    cost_table,
    failures_table,
    runs_table,
    success_tables,
    summary_table,
)
from reports.tables.cells import CELL_FIGURES, cell_table, completion_table
from reports.tables.records import (
    peak_window_table,
    percentile_tables,
    repeat_tables,
    time_split_table,
    token_count_table,
    token_warnings,
)
from reports.tables.study_block import study_section


def partial_alerts(runs: Sequence[RunColumn]) -> tuple[str, ...]:
    """One line per run that is interrupted or incomplete: its figures cover only what completed."""
    return tuple(
        f"{run.label} is a PARTIAL run: {'; '.join(run.metrics.partial)}"
        for run in runs
        if run.metrics.partial
    )


def unreachable_alerts(runs: Sequence[RunColumn]) -> tuple[str, ...]:
    """One line per run whose requests failed on the connection (``CONNECTION_FAILURES``: refused,
    reset, closed...): the target went away (a crash, a restart, the network), which no figure of the
    server's own answers shows. Names the cells and the classes, and how the other cells fared."""
    alerts = []
    for run in runs:
        by_cell: dict[str, dict[str, int]] = {}
        for cell, failure, count in run.metrics.failures:
            if failure in CONNECTION_FAILURES:
                by_cell.setdefault(cell, {})[failure] = count
        if not by_cell:
            continue
        hit = "; ".join(
            f"{cell}: {', '.join(f'{failure} ({count})' for failure, count in classes.items())}"
            for cell, classes in by_cell.items()
        )
        others = [cell for cell in run.metrics.cells if cell.cell not in by_cell]
        clean = sum(1 for cell in others if cell.success_count == cell.request_count)
        alerts.append(
            f"{run.label}: the target was UNREACHABLE for part of the run (it stopped, restarted or the "
            f"network failed): requests failed on the connection in {len(by_cell)} cell(s) ({hit}); "
            f"{clean} of the {len(others)} other cell(s) measured with every request successful"
        )
    return tuple(alerts)


def _latency_section(runs: Sequence[RunColumn]) -> Section:
    recorded = [run for run in runs if run.metrics.latencies_ms]
    rounded = [run for run in runs if not run.metrics.latencies_ms]
    percentile_rows: tuple[Table, ...] = tuple(table for run in recorded for table in percentile_tables(run))
    if rounded:
        percentile_rows += (cell_table(CELL_FIGURES["latency_percentiles_ms"], rounded),)
    bullets = [f"{run.label}: latencies {run.metrics.latency_source}" for run in runs]
    return Section(
        "Latency",
        tables=(
            cell_table(CELL_FIGURES["latency_ms"], runs),
            *percentile_rows,
            *(cell_table(CELL_FIGURES[key], runs) for key in ("normalized_latency_ms", "success_rate_pct")),
        ),
        bullets=tuple(bullets),
        plots=("latency", "latency_cdf", "latency_vs_throughput"),
    )


def _time_split_section(runs: Sequence[RunColumn]) -> Section | None:
    tables = tuple(table for run in runs if (table := time_split_table(run)) is not None)
    if not tables:
        return None
    return Section("Where the time goes", tables=tables, plots=("time_split",))


def _token_section(runs: Sequence[RunColumn]) -> Section:
    return Section(
        "Token throughput",
        text="Tokens: "
        + "; ".join(f"{run.label}: {COUNT_DESCRIPTIONS[run.metrics.token_count]}" for run in runs)
        + " (embed-bench report --count-tokens client|server).",
        tables=(
            *(
                cell_table(CELL_FIGURES[key], runs)
                for key in ("throughput_tokens_per_s", "tokens_per_request")
            ),
            peak_window_table(runs),
            *_high_load(runs),
        ),
        plots=("throughput_over_time", "token_throughput"),
    )


def _high_load(runs: Sequence[RunColumn]) -> tuple[Table, ...]:
    """The study's two high-load cells, where a run measured either (else no table of dashes)."""
    cells = [cell for cell in high_load_cells() if any(run.metrics.cell(cell) for run in runs)]
    return (cell_table(CELL_FIGURES["high_load"], runs, cells),) if cells else ()


def _token_count_section(runs: Sequence[RunColumn]) -> Section | None:
    if not any(run.metrics.token_check for run in runs):
        return None
    return Section("Token counts", tables=(token_count_table(runs),), alerts=token_warnings(runs))


def _repeats_section(runs: Sequence[RunColumn]) -> Section | None:
    if not any(run.metrics.repeats > 1 for run in runs):
        return None
    return Section(
        "Repeats",
        text="Each run's repeats: " + ", ".join(f"{run.label} {run.metrics.repeats}" for run in runs) + ".",
        tables=repeat_tables(runs),
    )


def build_sections(runs: Sequence[RunColumn], study: Sequence[StudySystem]) -> tuple[Section, ...]:
    """The whole report. ``study`` is empty unless --compare-study."""
    notes = tuple(f"{run.label}: {note}" for run in runs for note in run.metrics.notes) or ("none",)
    sections: list[Section | None] = [
        Section("Runs", tables=(runs_table(runs),)),
        Section(
            "Summary",
            alerts=partial_alerts(runs) + unreachable_alerts(runs) + token_warnings(runs),
            tables=(summary_table(runs),),
            bullets=tuple(f"{metric.label}: {metric.definition}" for metric in SUMMARY_METRICS),
        ),
        study_section(runs, study) if study else None,
        Section(
            "Success rate",
            tables=(*success_tables(runs), *filter(None, [completion_table(runs)])),
            plots=("success_rate",),
        ),
        _latency_section(runs),
        _time_split_section(runs),
        Section(
            "Request throughput",
            tables=tuple(
                cell_table(CELL_FIGURES[key], runs)
                for key in ("request_throughput_rps", "measured_request_throughput_rps")
            ),
        ),
        _token_section(runs),
        _repeats_section(runs),
        _token_count_section(runs),
        Section("Cost", tables=(cost_table(runs),), plots=("cost",)),
        Section("Failures", tables=(failures_table(runs),)),
        Section("Notes", text="What the input lacked and how the report coped with it.", bullets=notes),
    ]
    return tuple(section for section in sections if section is not None)
