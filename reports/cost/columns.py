"""What a report column is -- a run, or one of the study's systems -- and the figures read from one.

Runs and the study's systems share the report's columns, but only runs have per-cell metrics and
only the study has printed figures, so every read that must work on both lives here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from embed_bench.core.contract import Cell
from reports.cost.pricing import RunCost
from reports.metrics.runs import RunMetrics
from reports.metrics.study import StudySystem

# (key, title, attribute of RunMetrics and StudySystem): the study's three success-rate splits.
DIMENSIONS = (
    ("batch_size", "batch size", "success_rate_by_batch_size_pct"),
    ("concurrency", "concurrency", "success_rate_by_concurrency_pct"),
    ("passage_tokens", "passage length (tokens)", "success_rate_by_passage_tokens_pct"),
)


@dataclass(frozen=True)
class RunColumn:
    """A run as a report column: its metrics and, when it has a price, its cost."""

    metrics: RunMetrics
    cost: RunCost | None

    @property
    def label(self) -> str:
        return self.metrics.label


Column = RunColumn | StudySystem


def column_cells(columns: Sequence[Column]) -> set[Cell]:
    """Every cell any column has figures for."""
    cells: set[Cell] = set()
    for column in columns:
        if isinstance(column, RunColumn):
            cells |= {cell.key for cell in column.metrics.cells}
        else:
            cells |= set(column.latency_ms)
    return cells


def success_split(column: Column, attribute: str) -> dict[int, float]:
    """A column's success rate (%) by one dimension (an attribute named in ``DIMENSIONS``)."""
    return getattr(column.metrics if isinstance(column, RunColumn) else column, attribute)


def latency_ms(column: Column, cell: Cell) -> float | None:
    """A column's mean response time in one cell, None where it has no such cell."""
    if isinstance(column, StudySystem):
        return column.latency_ms.get(cell)
    metrics = column.metrics.cell(cell)
    return metrics.mean_latency_ms if metrics else None
