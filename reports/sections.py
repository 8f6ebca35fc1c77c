"""The report's sections in reading order: what every exporter renders, top to bottom."""

from __future__ import annotations

from collections.abc import Sequence

from reports.cell_tables import CELL_FIGURES, cell_table, peak_table
from reports.columns import Column, RunColumn
from reports.headline import SUMMARY_METRICS
from reports.study import StudySystem, high_load_cells
from reports.tables import (
    Section,
    Table,
    cost_table,
    failures_table,
    runs_table,
    success_tables,
    summary_table,
)


def build_sections(runs: Sequence[RunColumn], study: Sequence[StudySystem]) -> tuple[Section, ...]:
    """The whole report. ``study`` is empty unless --compare-study."""
    columns: list[Column] = [*runs, *study]

    def cells(*keys: str) -> tuple[Table, ...]:
        return tuple(cell_table(CELL_FIGURES[key], columns) for key in keys)

    notes = tuple(f"{run.label}: {note}" for run in runs for note in run.metrics.notes) or ("none",)
    return (
        Section("Runs", tables=(runs_table(runs),)),
        Section(
            "Summary",
            tables=(summary_table(columns),),
            bullets=tuple(f"{metric.label}: {metric.definition}" for metric in SUMMARY_METRICS),
        ),
        Section("Success rate", tables=success_tables(columns), plot="success_rate"),
        Section(
            "Latency",
            tables=cells("latency_ms", "latency_percentiles_ms", "normalized_latency_ms", "success_rate_pct"),
            plot="latency",
        ),
        Section(
            "Request throughput", tables=cells("request_throughput_rps", "measured_request_throughput_rps")
        ),
        Section(
            "Token throughput",
            tables=(
                *cells("throughput_tokens_per_s", "tokens_per_request"),
                peak_table(runs),
                cell_table(CELL_FIGURES["high_load"], columns, high_load_cells()),
            ),
            plot="token_throughput",
        ),
        Section("Cost", tables=(cost_table(columns),), plot="cost"),
        Section("Failures", tables=(failures_table(runs),)),
        Section("Notes", text="What the input lacked and how the report coped with it.", bullets=notes),
    )
