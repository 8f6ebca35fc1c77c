"""Plots: drawn for odd inputs too, and left out when there is nothing to draw."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from reports.columns import RunColumn
from reports.load import load_run
from reports.metrics import run_metrics
from reports.plots import build_plots
from reports.pricing import load_price_book, run_cost
from reports.study import load_study
from tests.reports.fixtures import CellSpec, write_run


def column(tmp_path: Path, cells: list[CellSpec], priced: bool) -> RunColumn:
    metrics = run_metrics(load_run(write_run(tmp_path / "run", cells)))
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


def test_runs_beside_the_study(tmp_path: Path) -> None:
    run = column(tmp_path, [CellSpec(32, 512, 10, 3000.0, requests=50, failures=20)], priced=True)
    plots = build_plots([run, *load_study()])
    assert set(plots) == {"latency", "success_rate", "token_throughput", "cost"}
    width, height = Image.open(io.BytesIO(plots["latency"].png)).size
    assert height > width  # one row of panels per column: the run and the study's four systems
