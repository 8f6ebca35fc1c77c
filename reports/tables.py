"""The report's content as plain tables and sections, shared by every exporter.

Tables are built once, with formatted strings, so ``report.md`` and ``report.html`` cannot disagree;
``summary.csv`` takes the raw numbers from the same ``SUMMARY_METRICS``. One column per run, in the
order given on the command line, then the study's systems when ``--compare-study`` is set. Every
figure's definition travels with its table, because the study never said how it averaged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reports.cells import Cell
from reports.metrics import CellMetrics, RunMetrics
from reports.pricing import RunCost
from reports.study import StudySystem, high_load_cells

MISSING = "—"


@dataclass(frozen=True)
class RunColumn:
    """A run as a report column: its metrics and, when it has a price, its cost."""

    metrics: RunMetrics
    cost: RunCost | None

    @property
    def label(self) -> str:
        return self.metrics.label


Column = RunColumn | StudySystem


@dataclass(frozen=True)
class Table:
    key: str
    title: str
    definition: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Section:
    """A heading, an intro, tables, a bullet list (definitions, notes), then the key of a plot."""

    title: str
    text: str = ""
    bullets: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()
    plot: str | None = None


_FIGURE = re.compile(r"[\d,.\s()/%—-]*\d[\d,.\s()/%—-]*|—")


def is_figure(text: str) -> bool:
    """Whether a formatted cell is a number (or figures like ``1,234 (1,024)``), aligned right."""
    return _FIGURE.fullmatch(text) is not None


def numeric_columns(table: Table) -> list[bool]:
    """Per column: every row holds a figure (such columns are right-aligned)."""
    return [all(is_figure(row[index]) for row in table.rows) for index in range(len(table.header))]


def fmt(value: float | None, spec: str) -> str:
    return MISSING if value is None else format(value, spec)


@dataclass(frozen=True)
class SummaryMetric:
    """A headline figure: how to get it from a run, the study's name for it, how it is computed."""

    key: str
    label: str
    spec: str
    of_run: Callable[[RunColumn], float | None]
    study_key: str | None
    definition: str

    def value(self, column: Column) -> float | None:
        if isinstance(column, RunColumn):
            return self.of_run(column)
        return column.summary.get(self.study_key) if self.study_key else None


def _cost_at_mean(column: RunColumn) -> float | None:
    return column.cost.usd_per_million_tokens_at_mean if column.cost else None


def _cost_at_peak(column: RunColumn) -> float | None:
    return column.cost.usd_per_million_tokens_at_peak if column.cost else None


SUMMARY_METRICS: tuple[SummaryMetric, ...] = (
    SummaryMetric(
        "request_count",
        "requests measured",
        ",.0f",
        lambda c: c.metrics.request_count,
        None,
        "completed measured requests over all cells, failed ones included (warm-up excluded)",
    ),
    SummaryMetric(
        "request_success_rate_pct",
        "request success rate (%)",
        ".1f",
        lambda c: c.metrics.success_rate_pct,
        "request_success_rate_pct",
        "successful requests / all measured requests, pooled over all cells",
    ),
    SummaryMetric(
        "latency_s",
        "latency (s)",
        ".2f",
        lambda c: c.metrics.mean_latency_ms / 1000,
        "latency_s",
        "mean over cells of each cell's mean response time (Locust's average, failed requests "
        "included), every cell weighted equally, cells where every request failed included (as in the study)",
    ),
    SummaryMetric(
        "normalized_latency_by_success_rate_s",
        "normalized latency (s)",
        ".2f",
        lambda c: c.metrics.normalized_latency_ms / 1000,
        "normalized_latency_by_success_rate_s",
        "latency (s) above / request success rate (as a fraction)",
    ),
    SummaryMetric(
        "token_throughput_tokens_per_s",
        "token throughput, mean over cells (tokens/s)",
        ",.0f",
        lambda c: c.metrics.mean_throughput_tokens_per_s,
        "token_throughput_tokens_per_s",
        "mean over timed cells of per-cell token throughput, each = successful tokens / cell duration "
        "(the study's own average: method not stated)",
    ),
    SummaryMetric(
        "overall_token_throughput_tokens_per_s",
        "token throughput, overall (tokens/s)",
        ",.0f",
        lambda c: c.metrics.overall_throughput_tokens_per_s,
        None,
        "all successful tokens of the timed cells / the sum of their durations",
    ),
    SummaryMetric(
        "peak_token_throughput_tokens_per_s",
        "peak token throughput (tokens/s)",
        ",.0f",
        lambda c: c.metrics.peak_throughput_tokens_per_s,
        "peak_token_throughput_tokens_per_s",
        "the best cell's token throughput (the cell is named in the token throughput table)",
    ),
    SummaryMetric(
        "price_usd_per_million_tokens",
        "price (USD per million tokens)",
        ".4f",
        _cost_at_mean,
        "price_usd_per_million_tokens",
        "per-token price as given; hourly price / (mean token throughput x 3600 / 1e6), "
        "as the study priced at its average throughput",
    ),
    SummaryMetric(
        "price_at_peak_usd_per_million_tokens",
        "price at peak throughput (USD per million tokens)",
        ".4f",
        _cost_at_peak,
        None,
        "per-token price as given; hourly price / (peak token throughput x 3600 / 1e6): the best case",
    ),
)


SUMMARY_BY_KEY = {metric.key: metric for metric in SUMMARY_METRICS}


def _header(first: Sequence[str], columns: Sequence[Column]) -> tuple[str, ...]:
    return (*first, *(column.label for column in columns))


def summary_table(columns: Sequence[Column]) -> Table:
    rows = tuple(
        (metric.label, *(fmt(metric.value(column), metric.spec) for column in columns))
        for metric in SUMMARY_METRICS
    )
    return Table(
        "summary", "Summary", "each figure is defined below the table", _header(["metric"], columns), rows
    )


def runs_table(runs: Sequence[RunColumn]) -> Table:
    """Where each run came from, as run.json tells it."""
    fields = ("backend", "host", "model", "grid", "started_at", "ended_at", "status")
    rows = [("directory", *(run.metrics.directory for run in runs))]
    rows += [(field, *(str(run.metrics.info.get(field) or MISSING) for run in runs)) for field in fields]
    rows.append(
        (
            "versions",
            *(
                ", ".join(
                    f"{name} {version}" for name, version in (run.metrics.info.get("versions") or {}).items()
                )
                or MISSING
                for run in runs
            ),
        )
    )
    rows.append(("price", *(run.cost.price.name if run.cost else "none given" for run in runs)))
    return Table(
        "runs", "Runs", "from each run's run.json (—: field absent)", _header(["field"], runs), tuple(rows)
    )


DIMENSIONS = (
    ("batch_size", "batch size", "success_rate_by_batch_size_pct"),
    ("concurrency", "concurrency", "success_rate_by_concurrency_pct"),
    ("passage_tokens", "passage length (tokens)", "success_rate_by_passage_tokens_pct"),
)


def success_split(column: Column, attribute: str) -> dict[int, float]:
    """A column's success rate (%) by one dimension (an attribute named in ``DIMENSIONS``)."""
    return getattr(column.metrics if isinstance(column, RunColumn) else column, attribute)


def latency_ms(column: Column, cell: Cell) -> float | None:
    """A column's mean response time in one cell, None where it has no such cell."""
    if isinstance(column, StudySystem):
        return column.latency_ms.get(cell)
    metrics = column.metrics.cell(cell)
    return metrics.mean_latency_ms if metrics else None


def success_tables(columns: Sequence[Column]) -> tuple[Table, ...]:
    """Success rate split by one dimension at a time, like the study's three tables."""
    tables = []
    for key, title, attribute in DIMENSIONS:
        by_column = [success_split(column, attribute) for column in columns]
        values = sorted(set().union(*by_column))
        rows = tuple((str(value), *(fmt(split.get(value), ".1f") for split in by_column)) for value in values)
        tables.append(
            Table(
                f"success_by_{key}",
                f"Success rate (%) by {title}",
                f"successful / all requests over the cells with that {title}, pooled",
                _header([title], columns),
                rows,
            )
        )
    return tuple(tables)


CellValue = Callable[[CellMetrics], str]
StudyValue = Callable[[StudySystem, Cell], str]


@dataclass(frozen=True)
class CellFigure:
    """A per-cell table: how to show a run's cell and, when the study printed it, the study's."""

    key: str
    title: str
    definition: str
    of_cell: CellValue
    of_study: StudyValue | None = None


def _percentiles(cell: CellMetrics) -> str:
    return " / ".join(
        fmt(value, ",.0f") for value in (cell.median_latency_ms, cell.p95_latency_ms, cell.p99_latency_ms)
    )


def _tokens(cell: CellMetrics) -> str:
    return f"{fmt(cell.tokens_per_request, ',.0f')} ({cell.nominal_tokens_per_request:,})"


def _throughput(cell: CellMetrics) -> str:
    return fmt(cell.throughput_tokens_per_s, ",.0f")


CELL_FIGURES: tuple[CellFigure, ...] = (
    CellFigure(
        "latency_ms",
        "Response time (ms) per cell",
        "Locust's mean response time of the cell's measured requests, failed ones included",
        lambda c: fmt(c.mean_latency_ms, ",.0f"),
        lambda s, k: fmt(s.latency_ms.get(k), ",.0f"),
    ),
    CellFigure(
        "request_throughput_rps",
        "Request throughput (requests/s) per cell, the study's formula",
        "concurrency / mean response time in seconds",
        lambda c: fmt(c.study_request_throughput_rps, ".2f"),
        lambda s, k: fmt(s.request_throughput_rps.get(k), ".2f"),
    ),
    CellFigure(
        "measured_request_throughput_rps",
        "Measured request throughput (requests/s) per cell",
        "completed requests / cell duration; cell duration = cells.csv end - start, the window in which "
        "the cell's users were held (spawn, warm-up and measured requests); Notes name cells timed otherwise",
        lambda c: fmt(c.measured_request_throughput_rps, ".2f"),
    ),
    CellFigure(
        "latency_percentiles_ms",
        "Median / p95 / p99 response time (ms) per cell",
        "Locust's percentiles, which it rounds to two significant digits; failed requests included",
        _percentiles,
    ),
    CellFigure(
        "success_rate_pct",
        "Success rate (%) per cell",
        "successful / all requests of the cell",
        lambda c: f"{c.success_rate_pct:.1f} ({c.success_count}/{c.request_count})",
    ),
    CellFigure(
        "normalized_latency_ms",
        "Normalized latency (ms) per cell",
        "mean response time / success rate; — where no request succeeded",
        lambda c: fmt(c.normalized_latency_ms, ",.0f"),
    ),
    CellFigure(
        "tokens_per_request",
        "Tokens per successful request (nominal batch x passage tokens)",
        "Average Content Size x Request Count / successful requests: the Locust side reports tokens "
        "embedded (server usage, else batch x passage tokens) as response_length and 0 for a failure",
        _tokens,
    ),
    CellFigure(
        "throughput_tokens_per_s",
        "Token throughput (tokens/s) per cell",
        "successful tokens / cell duration (as for the measured request throughput)",
        _throughput,
    ),
)


def _cell_rows(
    columns: Sequence[Column], figure: CellFigure, cells: Sequence[Cell]
) -> tuple[tuple[str, ...], ...]:
    rows = []
    for key in cells:
        values = []
        for column in columns:
            if isinstance(column, RunColumn):
                cell = column.metrics.cell(key)
                values.append(figure.of_cell(cell) if cell else MISSING)
            else:
                values.append(figure.of_study(column, key) if figure.of_study else MISSING)
        rows.append((str(key.concurrency), str(key.batch_size), str(key.passage_tokens), *values))
    return tuple(rows)


def cell_tables(columns: Sequence[Column]) -> tuple[Table, ...]:
    """One table per per-cell figure; rows are every cell of any run (and of the study when shown)."""
    keys = ("concurrency", "batch size", "passage tokens")
    tables = []
    for figure in CELL_FIGURES:
        shown = [column for column in columns if isinstance(column, RunColumn) or figure.of_study]
        cells = set()
        for column in shown:
            cells |= (
                {cell.key for cell in column.metrics.cells}
                if isinstance(column, RunColumn)
                else set(column.latency_ms)
            )
        tables.append(
            Table(
                figure.key,
                figure.title,
                figure.definition,
                _header(keys, shown),
                _cell_rows(shown, figure, sorted(cells)),
            )
        )
    return tuple(tables)


def high_load_table(columns: Sequence[Column], study_cells: Sequence[Cell]) -> Table:
    """The study's high-load token throughput: concurrency 10, 16,384 tokens per request."""
    rows = []
    for key in study_cells:
        values = []
        for column in columns:
            if isinstance(column, RunColumn):
                cell = column.metrics.cell(key)
                values.append(_throughput(cell) if cell else MISSING)
            else:
                values.append(fmt(column.high_load_throughput_tokens_per_s.get(key), ",.0f"))
        rows.append((str(key.concurrency), str(key.batch_size), str(key.passage_tokens), *values))
    return Table(
        "high_load",
        "Token throughput (tokens/s) at high load",
        "the study's two high-load cells: concurrency 10, 16,384 tokens per request; "
        "runs: successful tokens / cell duration",
        _header(("concurrency", "batch size", "passage tokens"), columns),
        tuple(rows),
    )


def peak_table(runs: Sequence[RunColumn]) -> Table:
    rows = (("peak cell", *(run.metrics.peak_cell or MISSING for run in runs)),)
    return Table(
        "peak_cell",
        "Peak token throughput cell",
        "the timed cell with the highest token throughput",
        _header(["figure"], runs),
        rows,
    )


def cost_table(columns: Sequence[Column]) -> Table:
    def hourly(column: RunColumn) -> str:
        return fmt(column.cost.price.total_usd_per_hour if column.cost else None, ".3f")

    per_run: list[tuple[str, Callable[[RunColumn], str], str | None]] = [
        ("price", lambda c: c.cost.price.name if c.cost else "none given", None),
        ("price description", lambda c: c.cost.price.description if c.cost else MISSING, None),
        ("hourly cost (USD/h, infrastructure + license)", hourly, None),
        (
            "USD per million tokens at mean token throughput",
            lambda c: fmt(_cost_at_mean(c), ".4f"),
            "price_usd_per_million_tokens",
        ),
        ("USD per million tokens at peak token throughput", lambda c: fmt(_cost_at_peak(c), ".4f"), None),
    ]
    rows = tuple(
        (
            label,
            *(
                of_run(column)
                if isinstance(column, RunColumn)
                else fmt(column.summary.get(study_key), ".4f")
                if study_key
                else MISSING
                for column in columns
            ),
        )
        for label, of_run, study_key in per_run
    )
    return Table(
        "cost",
        "Cost",
        "cost per million tokens = hourly cost / (token throughput x 3600 / 1e6); "
        "a per-token price (hosted API) is taken as it is",
        _header(["figure"], columns),
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


def build_sections(runs: Sequence[RunColumn], study: Sequence[StudySystem]) -> tuple[Section, ...]:
    """The whole report, in reading order. ``study`` is empty unless --compare-study."""
    columns: list[Column] = [*runs, *study]
    figures = {table.key: table for table in cell_tables(columns)}
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
            tables=tuple(
                figures[key]
                for key in (
                    "latency_ms",
                    "latency_percentiles_ms",
                    "normalized_latency_ms",
                    "success_rate_pct",
                )
            ),
            plot="latency",
        ),
        Section(
            "Request throughput",
            tables=(figures["request_throughput_rps"], figures["measured_request_throughput_rps"]),
        ),
        Section(
            "Token throughput",
            plot="token_throughput",
            tables=(
                figures["throughput_tokens_per_s"],
                figures["tokens_per_request"],
                peak_table(runs),
                high_load_table(columns, high_load_cells()),
            ),
        ),
        Section("Cost", tables=(cost_table(columns),), plot="cost"),
        Section("Failures", tables=(failures_table(runs),)),
        Section("Notes", text="What the input lacked and how the report coped with it.", bullets=notes),
    )
