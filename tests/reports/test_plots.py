"""Plots: drawn for odd inputs too, and left out when there is nothing to draw."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from reports.cost.columns import RunColumn
from reports.cost.pricing import load_price_book, run_cost
from reports.load.runs import load_run
from reports.metrics.runs import run_metrics
from reports.plots.runs import build_plots, latency_figure
from tests.reports.fixtures import CellSpec, write_run


def column(tmp_path: Path, cells: list[CellSpec], priced: bool) -> RunColumn:
    metrics = run_metrics(load_run(write_run(tmp_path / "run", cells, label=tmp_path.name)))
    price = load_price_book()["sagemaker_us_east_1"] if priced else None
    if price is None:
        return RunColumn(metrics, None)
    return RunColumn(
        metrics, run_cost(price, metrics.mean_throughput_tokens_per_s, metrics.peak_throughput_tokens_per_s)
    )


def test_run_without_price_and_a_zero_latency_cell(tmp_path: Path) -> None:
    cells = [CellSpec(1, 128, 1, 0.0, requests=5), CellSpec(1, 512, 1, 80.0, requests=5)]
    plots = build_plots([column(tmp_path, cells, priced=False)])
    assert set(plots) == {"latency", "success_rate", "token_throughput"}  # no price: no cost plot
    for plot in plots.values():
        assert Image.open(io.BytesIO(plot.png)).size[0] > 300


def test_no_empty_panels_and_a_linear_cost_axis(tmp_path: Path) -> None:
    """Two runs on different concurrencies: each gets panels only where it has cells (the others are
    hidden, not drawn grey), and the cost axis is linear with every bar labelled."""
    first = column(tmp_path / "a", [CellSpec(32, 512, 10, 3000.0, requests=50, failures=20)], priced=True)
    second = column(tmp_path / "b", [CellSpec(1, 128, 1, 100.0, requests=5)], priced=True)
    plots = build_plots([first, second])
    assert set(plots) == {"latency", "success_rate", "token_throughput", "cost"}
    axes = latency_figure([first, second]).axes
    drawn = [ax for ax in axes if ax.get_visible() and ax.images]
    hidden = [ax for ax in axes if not ax.get_visible()]
    assert (len(drawn), len(hidden)) == (2, 2)  # one panel per (run, concurrency) with cells; 2 hidden
    cost = Image.open(io.BytesIO(plots["cost"].png))
    assert cost.size[0] > 300
