"""Figures drawn from per-request records: throughput over time, where the time goes, latency
CDFs and latency against token throughput. Each returns None when no run has what it needs, so a
report of runs without records has no empty figure."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from embed_bench.core.contract import parse_cell_name
from reports.cost.columns import RunColumn
from reports.metrics.records import BIN_S, PEAK_WINDOW_S
from reports.plots.base import Plot, colour, png_bytes, readable_log

_PANEL_COLUMNS = 4
_TIME_PARTS = (
    ("queue", "mean_queue_ms", "#4c72b0"),
    ("inference", "mean_inference_ms", "#dd8452"),
    ("rest", "mean_rest_ms", "#8c8c8c"),
)


def throughput_over_time_plot(runs: Sequence[RunColumn]) -> Plot | None:
    """Successful tokens/s in 1 s bins, one panel per run, cell starts marked, peak window shaded."""
    timed = [run for run in runs if run.metrics.timeline is not None]
    if not timed:
        return None
    figure = Figure(figsize=(12, 2.6 * len(timed) + 0.6), layout="constrained")
    axes = figure.subplots(len(timed), 1, squeeze=False)[:, 0]
    for index, (ax, run) in enumerate(zip(axes, timed, strict=True)):
        line = run.metrics.timeline
        total = line.series.sum(axis=1)
        edges = np.append(total.index.to_numpy(), total.index[-1] + BIN_S)  # the last bin drawn whole
        ax.stairs(total.to_numpy(), edges, color=colour(index), linewidth=1)
        for span in line.spans:
            ax.axvline(span.start_s, color="#999", linewidth=0.6, linestyle="--")
            ax.text(span.start_s, 1.0, f" {span.cell}", transform=ax.get_xaxis_transform(), rotation=90,
                    va="top", ha="left", fontsize=6, color="#555")  # fmt: skip
        if line.peak:
            ax.axvspan(line.peak.start_s, line.peak.end_s, color="gold", alpha=0.35,
                       label=f"peak {PEAK_WINDOW_S} s: {line.peak.tokens_per_s:,.0f} tokens/s")  # fmt: skip
            ax.legend(loc="upper right", fontsize=8)
        ax.set_title(f"{run.label} ({run.metrics.token_count} token count)", fontsize=9, loc="left")
        ax.set_ylabel("tokens/s")
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    axes[-1].set_xlabel("seconds since the run's first request (dashed: a cell starts)")
    figure.suptitle("Successful token throughput over time (1 s bins)")
    return Plot(
        "throughput_over_time", "throughput_over_time.png", "Token throughput over time", png_bytes(figure)
    )


def time_split_plot(runs: Sequence[RunColumn]) -> Plot | None:
    """Mean queue, inference and rest per cell, stacked; one panel per run with timing headers."""
    split = [run for run in runs if any(cell.time_split for cell in run.metrics.cells)]
    if not split:
        return None
    figure = Figure(figsize=(12, 3.2 * len(split) + 0.6), layout="constrained")
    axes = figure.subplots(len(split), 1, squeeze=False)[:, 0]
    for ax, run in zip(axes, split, strict=True):
        cells = [cell for cell in run.metrics.cells if cell.time_split]
        bottom = np.zeros(len(cells))
        for name, attribute, part_colour in _TIME_PARTS:
            values = np.array([max(getattr(cell.time_split, attribute), 0.0) for cell in cells])
            ax.bar(range(len(cells)), values, bottom=bottom, color=part_colour, label=name, width=0.7)
            bottom += values
        for position, height in enumerate(bottom):
            ax.text(position, height, f"{height:,.0f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(cells)), [cell.cell for cell in cells], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("mean ms")
        ax.set_title(run.label, fontsize=9, loc="left")
        ax.margins(y=0.12)
    axes[0].legend(loc="upper left", fontsize=8, ncol=3)
    figure.suptitle("Where the time goes: mean queue, inference and rest (network, HTTP, client) per cell")
    return Plot("time_split", "where_the_time_goes.png", "Where the time goes", png_bytes(figure))


def latency_cdf_plot(runs: Sequence[RunColumn]) -> Plot | None:
    """One panel per cell, each run's empirical CDF of latency (log x)."""
    recorded = [run for run in runs if run.metrics.latencies_ms]
    if not recorded:
        return None
    cells = sorted({cell for run in recorded for cell in run.metrics.latencies_ms}, key=parse_cell_name)
    columns = min(_PANEL_COLUMNS, len(cells))
    rows = -(-len(cells) // columns)
    figure = Figure(figsize=(3.3 * columns + 0.4, 2.6 * rows + 0.9), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, cell in zip(axes, cells, strict=False):
        for index, run in enumerate(recorded):
            latencies = np.sort(run.metrics.latencies_ms.get(cell, np.array([])))
            latencies = latencies[latencies > 0]
            if len(latencies):
                fraction = np.arange(1, len(latencies) + 1) / len(latencies)
                ax.step(
                    latencies, fraction, where="post", color=colour(index), label=run.label, linewidth=1.2
                )
        ax.set_xscale("log")
        readable_log(ax.xaxis)
        ax.set_ylim(0, 1.02)
        ax.set_title(cell, fontsize=9)
        ax.grid(True, which="both", linewidth=0.3, alpha=0.6)
        ax.tick_params(labelsize=7)
    for ax in axes[len(cells) :]:
        ax.set_visible(False)  # the grid's leftover slots are hidden, not drawn empty
    figure.supxlabel("latency (ms, log scale), every measured request")
    figure.supylabel("fraction of requests")
    axes[0].legend(loc="lower right", fontsize=7)
    figure.suptitle("Latency CDF per cell")
    return Plot("latency_cdf", "latency_cdf.png", "Latency CDF per cell", png_bytes(figure))


def latency_vs_throughput_plot(runs: Sequence[RunColumn]) -> Plot | None:
    """Each cell as a point: token throughput (x) against median and p95 latency (y), per run."""
    points = [
        (run, [cell for cell in run.metrics.cells if cell.throughput_tokens_per_s and cell.median_latency_ms])
        for run in runs
    ]
    if not any(cells for _, cells in points):
        return None
    figure = Figure(figsize=(10, 6), layout="constrained")
    ax = figure.subplots()
    for index, (run, cells) in enumerate(points):
        x = [cell.throughput_tokens_per_s for cell in cells]
        ax.scatter(
            x, [cell.median_latency_ms for cell in cells], color=colour(index), label=f"{run.label}: p50"
        )
        p95 = [
            (value, cell.p95_latency_ms) for value, cell in zip(x, cells, strict=True) if cell.p95_latency_ms
        ]
        if p95:
            ax.scatter(
                *zip(*p95, strict=True),
                facecolors="none",
                edgecolors=colour(index),
                label=f"{run.label}: p95",
            )
        for value, cell in zip(x, cells, strict=True):
            ax.annotate(cell.cell, (value, cell.median_latency_ms), fontsize=6, xytext=(3, 3),
                        textcoords="offset points", color="#444")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        readable_log(axis)
    ax.set_xlabel("token throughput of the cell (tokens/s, log scale)")
    ax.set_ylabel("latency (ms, log scale; all requests)")
    ax.grid(True, which="both", linewidth=0.3, alpha=0.6)
    ax.legend(fontsize=8)
    figure.suptitle("Latency against token throughput, one point per cell")
    return Plot(
        "latency_vs_throughput",
        "latency_vs_throughput.png",
        "Latency against token throughput",
        png_bytes(figure),
    )


def build_record_plots(runs: Sequence[RunColumn]) -> list[Plot]:
    plots = [
        throughput_over_time_plot(runs),
        time_split_plot(runs),
        latency_cdf_plot(runs),
        latency_vs_throughput_plot(runs),
    ]
    return [plot for plot in plots if plot is not None]
