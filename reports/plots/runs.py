"""The report's figures of whole runs as PNG bytes, drawn with matplotlib's Agg backend (the shared
primitives -- ``Plot``, ``png_bytes``, ``colour`` -- are in :mod:`reports.plots.base`).

Bars are grouped so that labels stay readable with many runs: one colour per column where the
groups are grid values, one colour per figure where the groups are the columns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from embed_bench.core.contract import Cell
from reports.cost.columns import DIMENSIONS, Column, RunColumn, latency_ms, success_split
from reports.cost.headline import SUMMARY_BY_KEY
from reports.plots.base import Plot, colour, png_bytes


def latency_plot(runs: Sequence[RunColumn]) -> Plot:
    return Plot(
        "latency",
        "latency_by_cell.png",
        "Mean response time by batch size x passage length",
        png_bytes(latency_figure(runs)),
    )


# One panel of the latency figure: its batch sizes (rows), passage lengths (columns) and the mean
# response times in seconds (masked where the run has no such cell).
_Panel = tuple[list[int], list[int], np.ma.MaskedArray]


def latency_figure(runs: Sequence[RunColumn]) -> Figure:
    """Mean response time as a batch size x passage length grid, one panel per run and concurrency.

    A panel shows only the batch sizes and lengths its run has at that concurrency, and a run
    without a concurrency gets no panel (its slot is hidden), so no panel is drawn empty."""
    concurrencies = sorted({cell.concurrency for run in runs for cell in run.metrics.cells})
    panels = _latency_panels(runs, concurrencies)
    positive = [value for _, _, grid in panels.values() for value in grid.compressed() if value > 0]
    norm = LogNorm(vmin=min(positive), vmax=max(positive)) if len(set(positive)) > 1 else None
    tallest = max(len(batches) for batches, _, _ in panels.values())
    figure = Figure(
        figsize=(3.2 * len(concurrencies) + 1.2, (0.55 * tallest + 0.9) * len(runs) + 0.6),
        layout="constrained",
    )
    axes = figure.subplots(len(runs), len(concurrencies), squeeze=False)
    image = None
    for row, run in enumerate(runs):
        for col, concurrency in enumerate(concurrencies):
            ax = axes[row][col]
            if (row, concurrency) not in panels:
                ax.set_visible(False)
                continue
            image = _draw_latency_panel(ax, run, concurrency, panels[(row, concurrency)], norm)
    if image is not None:
        _latency_colorbar(figure, image, axes, norm)
    figure.suptitle(
        "Mean response time (s) by batch size x passage length, per concurrency\n"
        "(failed requests included; 'ok': success rate where below 100%; grey: no such cell)"
    )
    return figure


def _latency_panels(runs: Sequence[RunColumn], concurrencies: Sequence[int]) -> dict[tuple[int, int], _Panel]:
    """The grid of each (run index, concurrency) the run has cells at: only its own batch sizes and
    lengths, so a run with a sparse grid gets no empty rows or columns."""
    panels = {}
    for index, run in enumerate(runs):
        for concurrency in concurrencies:
            cells = [cell for cell in run.metrics.cells if cell.concurrency == concurrency]
            if cells:
                batches = sorted({cell.batch_size for cell in cells})
                lengths = sorted({cell.passage_tokens for cell in cells})
                grid = np.ma.masked_invalid(
                    [
                        [
                            _seconds(
                                latency_ms(run, Cell(concurrency=concurrency, batch_size=b, passage_tokens=t))
                            )
                            for t in lengths
                        ]
                        for b in batches
                    ]
                )
                panels[(index, concurrency)] = (batches, lengths, grid)
    return panels


def _draw_latency_panel(
    ax: Axes, run: RunColumn, concurrency: int, panel: _Panel, norm: LogNorm | None
) -> AxesImage:
    """One panel: the grid as an image on the shared colour scale, each cell's seconds written on
    it (white on dark cells, so they stay legible) with its success rate where some failed."""
    batches, lengths, grid = panel
    image = ax.imshow(grid, cmap="viridis", norm=norm, aspect="auto")
    ax.set_facecolor("#e6e6e6")
    for (y, x), value in np.ndenumerate(grid.filled(np.nan)):
        if not math.isnan(value):
            dark = norm is not None and value > 0 and norm(value) < 0.5
            cell = Cell(concurrency=concurrency, batch_size=batches[y], passage_tokens=lengths[x])
            ax.text(x, y, f"{value:.2f}" + _success_mark(run, cell), ha="center", va="center",
                    fontsize=8, color="white" if dark else "black")  # fmt: skip
    ax.set_xticks(range(len(lengths)), [str(length) for length in lengths], fontsize=8)
    ax.set_yticks(range(len(batches)), [str(batch) for batch in batches], fontsize=8)
    ax.set_title(f"{run.label}, c={concurrency}", fontsize=9)
    ax.set_xlabel("passage tokens", fontsize=8)
    ax.set_ylabel("batch size", fontsize=8)
    return image


def _latency_colorbar(figure: Figure, image: AxesImage, axes: np.ndarray, norm: LogNorm | None) -> None:
    """The colour bar every panel shares; on a log scale labelled at 1, 2, 5 x 10^k in plain
    figures, since the default labels of a short log axis are powers of ten or none at all."""
    bar = figure.colorbar(image, ax=axes, label="mean response time (s)", shrink=0.6)
    if norm is not None:  # a log colour scale: labels at 1, 2, 5 x 10^k, plain figures
        bar.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        bar.ax.yaxis.set_minor_formatter(NullFormatter())


def _success_mark(run: RunColumn, cell: Cell) -> str:
    """A run's cell where some requests failed shows its success rate under the latency."""
    metrics = run.metrics.cell(cell)
    return f"\n{metrics.success_rate_pct:.0f}% ok" if metrics and metrics.failure_count else ""


def _seconds(milliseconds: float | None) -> float:
    return math.nan if milliseconds is None else milliseconds / 1000


def _grouped_bars(
    ax: Axes,
    groups: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    horizontal: bool = False,
) -> None:
    """Bars per group, one colour per series; a missing value draws no bar."""
    width = 0.8 / max(len(series), 1)
    for index, (label, values) in enumerate(series):
        positions = [group + (index - (len(series) - 1) / 2) * width for group in range(len(groups))]
        lengths = [math.nan if value is None else value for value in values]
        if horizontal:
            ax.barh(positions, lengths, height=width, label=label, color=colour(index))
        else:
            ax.bar(positions, lengths, width=width, label=label, color=colour(index))
            for position, value in zip(positions, values, strict=True):
                if value == 0:  # a zero bar is invisible: say it, so it differs from a missing cell
                    ax.text(position, 0, "0", ha="center", va="bottom", fontsize=7, color=colour(index))
    if horizontal:
        ax.set_yticks(range(len(groups)), groups)
        ax.invert_yaxis()
    else:
        ax.set_xticks(range(len(groups)), groups)


def success_rate_plot(columns: Sequence[Column]) -> Plot:
    """Success rate by batch size, by concurrency and by passage length; one colour per column."""
    figure = Figure(figsize=(15, 4.8), layout="constrained")
    axes = figure.subplots(1, len(DIMENSIONS))
    for ax, (_, title, attribute) in zip(axes, DIMENSIONS, strict=True):
        splits = [success_split(column, attribute) for column in columns]
        values = sorted(set().union(*splits))
        series = [
            (column.label, [split.get(value) for value in values])
            for column, split in zip(columns, splits, strict=True)
        ]
        _grouped_bars(ax, [str(value) for value in values], series)
        ax.set_xlabel(title)
        ax.set_ylabel("success rate (%)")
        ax.set_ylim(0, 105)
    figure.legend(
        *axes[0].get_legend_handles_labels(),
        loc="outside lower center",
        ncol=min(len(columns), 4),
        fontsize=8,
    )
    figure.suptitle("Request success rate by dimension (no bar: no such cell; 0: nothing succeeded)")
    return Plot("success_rate", "success_rate.png", "Request success rate by dimension", png_bytes(figure))


def _summary_bars(
    key: str,
    title: str,
    filename: str,
    xlabel: str,
    metrics: Sequence[tuple[str, str]],
    columns: Sequence[Column],
    label_format: str,
) -> Plot | None:
    """Horizontal bars of summary figures, one group per column, one colour per (metric key, label);
    None when no column has any of them."""
    series = [
        (label, [SUMMARY_BY_KEY[metric].value(column) for column in columns]) for metric, label in metrics
    ]
    if not any(value for _, values in series for value in values):
        return None
    figure = Figure(figsize=(10, 1.2 + 0.28 * len(columns) * len(metrics)), layout="constrained")
    ax = figure.subplots()
    _grouped_bars(ax, [column.label for column in columns], series, horizontal=True)
    for container in ax.containers:
        ax.bar_label(container, fmt=label_format, fontsize=7, padding=2)
    ax.margins(x=0.15)
    ax.set_xlabel(xlabel)
    figure.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=len(metrics), fontsize=8)
    figure.suptitle(title)
    return Plot(key, filename, title, png_bytes(figure))


def token_throughput_plot(columns: Sequence[Column]) -> Plot | None:
    return _summary_bars(
        "token_throughput",
        "Token throughput (successful tokens / s)",
        "token_throughput.png",
        "tokens/s",
        [
            ("token_throughput_tokens_per_s", "mean over cells"),
            ("overall_token_throughput_tokens_per_s", "overall"),
            ("best_cell_token_throughput_tokens_per_s", "best cell"),
            ("peak_token_throughput_tokens_per_s", "peak 10 s window (best cell without records)"),
        ],
        columns,
        "{:,.0f}",
    )


def cost_plot(columns: Sequence[Column]) -> Plot | None:
    """None when no column has a price."""
    return _summary_bars(
        "cost",
        "Cost per million tokens (USD)",
        "cost_per_million_tokens.png",
        "USD per million tokens (linear scale: bar lengths compare as the prices do)",
        [
            ("price_usd_per_million_tokens", "at mean token throughput"),
            ("price_at_peak_usd_per_million_tokens", "at peak token throughput"),
        ],
        columns,
        "{:.4f}",
    )


def build_plots(runs: Sequence[RunColumn]) -> dict[str, Plot]:
    """Every figure of the runs' summary tables that has something to show, by key (the keys
    ``tables.Section.plots`` names). The study's figures are tables of their own, never drawn here."""
    plots = [
        latency_plot(runs),
        success_rate_plot(runs),
        token_throughput_plot(runs),
        cost_plot(runs),
    ]
    return {plot.key: plot for plot in plots if plot is not None}
