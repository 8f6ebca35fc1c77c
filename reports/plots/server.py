"""The server's figures on the run's timeline, under the client's tokens/s and p95, with the cells'
boundaries: one figure per run that sampled its target (``reports.metrics.server``).

Panels share the time axis (seconds since the run's first cell started); each is drawn only when the
run has its series, so a CPU server has no GPU axis and a foreign endpoint without pass histograms
no pass panels.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from reports.metrics.server import CLIENT_BIN_S, P95_BIN_S, RunTelemetry, plot_key
from reports.plots.base import Plot, png_bytes

# 12,500 tokens, but 0.25 cores: plain figures, decimals only where the axis is small.
_FIGURES = FuncFormatter(lambda value, _: f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}")
Series = tuple[str, str, str]  # column, legend label, colour


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-") or "run"


def _draw(ax: Axes, frame: pd.DataFrame | None, origin: float, series: Sequence[Series], ylabel: str) -> bool:
    """Lines of ``series`` present in ``frame`` on ``ax``; False when none is."""
    present = [item for item in series if frame is not None and item[0] in frame.columns]
    drawn = False
    for column, label, colour in present:
        values = frame[column].dropna()
        if len(values):
            ax.plot(values.index - origin, values.to_numpy(), color=colour, linewidth=1, label=label,
                    marker="." if len(values) < 40 else None, markersize=3)  # fmt: skip
            drawn = True
    if drawn:
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(_FIGURES)
        ax.tick_params(labelsize=7)
    return drawn


def _pair(
    ax: Axes,
    frame: pd.DataFrame | None,
    origin: float,
    left: Sequence[Series],
    right: Sequence[Series],
    labels: tuple[str, str],
) -> bool:
    """Left series on ``ax``, right ones on a twin axis; one legend for both."""
    drawn = _draw(ax, frame, origin, left, labels[0])
    twin = ax.twinx()
    if _draw(twin, frame, origin, right, labels[1]):
        drawn = True
    else:
        twin.set_visible(False)
    handles = [h for axis in (ax, twin) for h in axis.get_legend_handles_labels()[0]]
    if handles:
        ax.legend(handles=handles, loc="upper left", fontsize=7)
    return drawn


PANELS: tuple[tuple[str, Callable[[Axes, RunTelemetry, float], bool]], ...] = (
    (
        "client",
        lambda ax, run, origin: _pair(
            ax, run.client, origin,
            [("tokens_per_s", f"tokens/s, successful ({CLIENT_BIN_S:g} s bins)", "C0")],
            [("p95_latency_ms", f"p95 latency, ms ({P95_BIN_S:g} s bins)", "C3")],
            ("tokens/s", "p95 ms"),
        ),
    ),
    (
        "queue",
        lambda ax, run, origin: _pair(
            ax, run.series, origin,
            [("queue_requests", "requests waiting", "C1"), ("in_flight_requests", "requests in flight", "C7")],
            [("queue_tokens", "tokens waiting", "C4")],
            ("requests", "tokens"),
        ),
    ),
    (
        "pass size",
        lambda ax, run, origin: _pair(
            ax, run.series, origin,
            [("pass_requests", "requests per pass", "C2"), ("pass_inputs", "inputs per pass", "C8")],
            [("pass_tokens", "tokens per pass", "C5")],
            ("per pass", "tokens per pass"),
        ),
    ),
    (
        "pass time",
        lambda ax, run, origin: _draw(ax, run.series, origin, [("pass_ms", "mean pass time, ms", "C6")], "ms"),
    ),
    (
        "cpu and gpu",
        lambda ax, run, origin: _pair(
            ax, run.series, origin,
            [("cpu_cores", "process CPU, cores", "C9")],
            [("gpu_utilization_pct", "GPU utilization, %", "C2")],
            ("cores", "GPU %"),
        ),
    ),
    (
        "gpu power",
        lambda ax, run, origin: _draw(ax, run.series, origin, [("gpu_power_w", "GPU power, W", "C3")], "W"),
    ),
)  # fmt: skip


def telemetry_plot(index: int, run: RunTelemetry) -> Plot | None:
    """One run's timeline; None when it sampled nothing."""
    if not run.measured:
        return None
    origin = run.origin_s
    figure = Figure(figsize=(12, 1.9 * len(PANELS) + 0.8), layout="constrained")
    axes = figure.subplots(len(PANELS), 1, sharex=True, squeeze=False)[:, 0]
    shown = [ax for ax, (_, draw) in zip(axes, PANELS, strict=True) if draw(ax, run, origin)]
    for ax in axes:
        if ax not in shown:
            ax.set_visible(False)
    for ax in shown:
        for span in run.spans:
            ax.axvline(span.start_s - origin, color="#999", linewidth=0.6, linestyle="--")
        ax.grid(True, axis="y", linewidth=0.3, alpha=0.6)
    if shown:
        for span in run.spans:
            shown[0].text(span.start_s - origin, 1.0, f" {span.cell}", transform=shown[0].get_xaxis_transform(),
                          rotation=90, va="top", ha="left", fontsize=6, color="#555")  # fmt: skip
        shown[-1].set_xlabel("seconds since the run's first cell started (dashed: a cell starts)")
        shown[-1].xaxis.set_tick_params(labelbottom=True)
    figure.suptitle(f"{run.label}: the server's figures beside the client's ({run.url})", fontsize=10)
    return Plot(
        plot_key(index),
        f"server_telemetry_{_slug(run.label)}.png",
        f"Server telemetry: {run.label}",
        png_bytes(figure),
    )


def build_telemetry_plots(runs: Sequence[RunTelemetry]) -> list[Plot]:
    plots = [telemetry_plot(index, run) for index, run in enumerate(runs)]
    return [plot for plot in plots if plot is not None]
