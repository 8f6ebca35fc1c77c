"""Plots of rate cells: latency percentiles against offered load (the "hockey stick"), per whole cell
and per shape of a mix, and the achieved rate and goodput against the rate asked for.

One colour per run and series (shape or mix), one line style per percentile; each run's p95 target
is drawn as a horizontal line of the run's colour.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from matplotlib.figure import Figure

from reports.metrics.rates import RateFigures, RateRun
from reports.plots.base import Plot, colour, png_bytes, readable_log

_PERCENTILE_STYLES = ((50.0, ":"), (95.0, "-"), (99.0, "--"))


def _series(
    runs: Sequence[RateRun], figures_of: Callable[[RateRun], Sequence[RateFigures]]
) -> list[tuple[str, int, RateRun, list[RateFigures]]]:
    """(legend label, colour index, run, its figures by rate), one per run and series."""
    lines = []
    for run in runs:
        groups: dict[str, list[RateFigures]] = {}
        for figures in figures_of(run):
            key = figures.series + (f" {figures.shape}" if figures.shape != "all" else "")
            groups.setdefault(key, []).append(figures)
        for key, group in groups.items():
            lines.append(
                (f"{run.label} {key}", len(lines), run, sorted(group, key=lambda f: f.request_rate_per_s))
            )
    return lines


def _hockey_stick(
    runs: Sequence[RateRun], figures_of: Callable[[RateRun], Sequence[RateFigures]], title: str
) -> Figure | None:
    lines = _series(runs, figures_of)
    if not lines:
        return None
    figure = Figure(figsize=(8, 5))
    axes = figure.add_subplot()
    targets_drawn: set[str] = set()
    for label, index, run, group in lines:
        rates = [figures.request_rate_per_s for figures in group]
        for percentile, style in _PERCENTILE_STYLES:
            values = [figures.latency.at(percentile) for figures in group]
            axes.plot(
                rates,
                values,
                style,
                marker="o",
                color=colour(index),
                label=f"{label} p{percentile:g}",
                markersize=4,
            )
        if run.target is not None and run.label not in targets_drawn:
            targets_drawn.add(run.label)
            axes.axhline(
                run.target.p95_latency_ms,
                color=colour(index),
                linewidth=0.8,
                alpha=0.5,
                label=f"{run.label} target p95 {run.target.p95_latency_ms:g} ms",
            )
    axes.set_yscale("log")
    readable_log(axes.yaxis)
    axes.set_xlabel("offered rate (requests/s, as asked)")
    axes.set_ylabel("latency from the planned send time (ms)")
    axes.set_title(title)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize=7, ncol=2)
    return figure


def hockey_stick_plot(runs: Sequence[RateRun]) -> Plot | None:
    figure = _hockey_stick(
        runs, lambda run: run.cells, "Latency against offered load (p50 dotted, p95, p99 dashed)"
    )
    if figure is None:
        return None
    return Plot(
        "hockey_stick", "latency_vs_offered_rate.png", "Latency against offered load", png_bytes(figure)
    )


def hockey_stick_shapes_plot(runs: Sequence[RateRun]) -> Plot | None:
    figure = _hockey_stick(
        runs, lambda run: run.shapes, "Latency against offered load, per shape of each mix"
    )
    if figure is None:
        return None
    return Plot(
        "hockey_stick_shapes",
        "latency_vs_offered_rate_by_shape.png",
        "Latency against offered load, per shape",
        png_bytes(figure),
    )


def offered_vs_achieved_plot(runs: Sequence[RateRun]) -> Plot | None:
    lines = _series(runs, lambda run: run.cells)
    if not lines:
        return None
    figure = Figure(figsize=(7, 5))
    axes = figure.add_subplot()
    highest = max(figures.request_rate_per_s for _, _, _, group in lines for figures in group)
    axes.plot([0, highest], [0, highest], color="#8c8c8c", linewidth=0.8, label="achieved = asked")
    for label, index, _, group in lines:
        rates = [figures.request_rate_per_s for figures in group]
        axes.plot(rates, [figures.achieved_rate_per_s for figures in group], "-o", color=colour(index),
                  label=f"{label} achieved", markersize=4)  # fmt: skip
        axes.plot(rates, [figures.goodput_requests_per_s for figures in group], "--x", color=colour(index),
                  label=f"{label} goodput", markersize=4)  # fmt: skip
    axes.set_xlabel("offered rate (requests/s, as asked)")
    axes.set_ylabel("requests/s")
    axes.set_title("Achieved rate and goodput against the rate asked for")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    return Plot(
        "offered_vs_achieved", "offered_vs_achieved_rate.png", "Achieved rate and goodput", png_bytes(figure)
    )


def build_rate_plots(runs: Sequence[RateRun]) -> list[Plot]:
    plots = (hockey_stick_plot(runs), hockey_stick_shapes_plot(runs), offered_vs_achieved_plot(runs))
    return [plot for plot in plots if plot is not None]
