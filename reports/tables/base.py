"""The report's content as plain tables of formatted strings, shared by every exporter.

Tables are built once, so ``report.md`` and ``report.html`` cannot disagree. One column per run, in
the order given on the command line, then the study's systems when ``--compare-study`` is set.
This module holds the table model and the whole-run tables; per-cell tables are in
``cell_tables``, the order of sections in ``sections``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reports.cost.columns import DIMENSIONS, Column, RunColumn, success_split
from reports.cost.headline import SUMMARY_BY_KEY, SUMMARY_METRICS

MISSING = "—"
# Figures, with what may ride along: a thin-sample mark, a confidence interval, a noise mark, n=.
_FIGURE = re.compile(r"[\d,.\s()/%—†±≈n=-]*\d[\d,.\s()/%—†±≈n=-]*|—")


@dataclass(frozen=True)
class Table:
    key: str
    title: str
    definition: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Section:
    """A heading, alerts (a partial run, a token count that strays), an intro, tables, a bullet list
    (definitions, notes), then the keys of its plots. ``separate`` sections (the reference study's
    published figures) are set apart visibly: a framed, tinted block in HTML, a quoted one in Markdown."""

    title: str
    text: str = ""
    bullets: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()
    plots: tuple[str, ...] = ()
    alerts: tuple[str, ...] = ()
    separate: bool = False


def fmt(value: float | None, spec: str) -> str:
    return MISSING if value is None else format(value, spec)


def is_figure(text: str) -> bool:
    """Whether a formatted cell is a number (or figures like ``1,234 (1,024)``), aligned right."""
    return _FIGURE.fullmatch(text) is not None


def numeric_columns(table: Table) -> list[bool]:
    """Per column: every row holds a figure (such columns are right-aligned)."""
    return [all(is_figure(row[index]) for row in table.rows) for index in range(len(table.header))]


def header(first: Sequence[str], columns: Sequence[Column]) -> tuple[str, ...]:
    return (*first, *(column.label for column in columns))


def summary_table(columns: Sequence[Column]) -> Table:
    rows = tuple(
        (metric.label, *(fmt(metric.value(column), metric.spec) for column in columns))
        for metric in SUMMARY_METRICS
    )
    return Table(
        "summary", "Summary", "each figure is defined below the table", header(["metric"], columns), rows
    )


def _versions(run: RunColumn) -> str:
    versions = run.metrics.info.get("versions") or {}
    return ", ".join(f"{name} {version}" for name, version in versions.items()) or MISSING


def runs_table(runs: Sequence[RunColumn]) -> Table:
    """Where each run came from, as run.json tells it."""
    fields = ("backend", "host", "model", "grid", "started_at", "ended_at", "status")
    rows = [
        ("directory", *(run.metrics.directory for run in runs)),
        *((field, *(str(run.metrics.info.get(field) or MISSING) for run in runs)) for field in fields),
        ("versions", *(_versions(run) for run in runs)),
        ("price", *(run.cost.price.name if run.cost else "none given" for run in runs)),
        ("latencies", *(run.metrics.latency_source for run in runs)),
        ("tokens counted", *(run.metrics.token_count for run in runs)),
        ("repeats", *(str(run.metrics.repeats) for run in runs)),
        (
            "complete",
            *("no: " + "; ".join(run.metrics.partial) if run.metrics.partial else "yes" for run in runs),
        ),
    ]
    return Table(
        "runs", "Runs", "from each run's run.json (—: field absent)", header(["field"], runs), tuple(rows)
    )


def success_tables(columns: Sequence[Column]) -> tuple[Table, ...]:
    """Success rate split by one dimension at a time, like the study's three tables."""
    tables = []
    for key, title, attribute in DIMENSIONS:
        by_column = [success_split(column, attribute) for column in columns]
        values = sorted(set().union(*by_column))
        rows = tuple((str(value), *(fmt(split.get(value), ".1f") for split in by_column)) for value in values)
        definition = f"successful / all requests over the cells with that {title}, pooled"
        tables.append(
            Table(
                f"success_by_{key}",
                f"Success rate (%) by {title}",
                definition,
                header([title], columns),
                rows,
            )
        )
    return tuple(tables)


def _run_row(columns: Sequence[Column], label: str, of_run: Callable[[RunColumn], str]) -> tuple[str, ...]:
    """A row that only runs have: the study's columns show MISSING."""
    return (label, *(of_run(column) if isinstance(column, RunColumn) else MISSING for column in columns))


def cost_table(columns: Sequence[Column]) -> Table:
    """The price behind each run's cost, and the cost at its mean and at its peak token throughput."""
    rows = (
        _run_row(columns, "price", lambda run: run.cost.price.name if run.cost else "none given"),
        _run_row(
            columns, "price description", lambda run: run.cost.price.description if run.cost else MISSING
        ),
        _run_row(
            columns,
            "hourly cost (USD/h, infrastructure + license)",
            lambda run: fmt(run.cost.price.total_usd_per_hour if run.cost else None, ".3f"),
        ),
        *(
            (label, *(fmt(SUMMARY_BY_KEY[key].value(column), ".4f") for column in columns))
            for label, key in (
                ("USD per million tokens at mean token throughput", "price_usd_per_million_tokens"),
                ("USD per million tokens at peak token throughput", "price_at_peak_usd_per_million_tokens"),
            )
        ),
    )
    return Table(
        "cost",
        "Cost",
        "cost per million tokens = hourly cost / (token throughput x 3600 / 1e6); a per-token price "
        "(hosted API) x the tokens the server billed (its usage) per token counted",
        header(["figure"], columns),
        rows,
    )


def failures_table(runs: Sequence[RunColumn], limit: int = 10) -> Table:
    """The most frequent failure messages of each run, from locust_failures.csv."""
    rows = tuple(
        (run.label, cell, error.replace("\n", " "), f"{count:,}")
        for run in runs
        for cell, error, count in run.metrics.failures[:limit]
    )
    return Table(
        "failures",
        "Most frequent failures",
        f"from locust_failures.csv, up to {limit} per run, most frequent first",
        ("run", "cell", "error", "occurrences"),
        rows,
    )
