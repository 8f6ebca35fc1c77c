"""Table building: alignment of figures, and every headline figure defined in the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from reports.cost.columns import RunColumn
from reports.cost.headline import SUMMARY_METRICS
from reports.load.runs import load_run
from reports.metrics.runs import run_metrics
from reports.tables.base import is_figure
from reports.tables.sections import build_sections


@pytest.mark.parametrize(
    ("text", "figure"),
    [
        ("1,234", True),
        ("0.0200", True),
        ("—", True),
        ("100.0 (5/5)", True),
        ("— (16,384)", True),
        ("1,600 / 1,900 / 2,000", True),
        ("b=32 t=512 c=5", False),
        ("HTTP 500 CUDA out of memory", False),
        ("sagemaker_us_east_1", False),
        ("2025-06-15T15:06:40Z", False),
    ],
)
def test_is_figure(text: str, figure: bool) -> None:
    assert is_figure(text) is figure


def test_every_headline_figure_is_defined(study_runs: dict[str, Path]) -> None:
    runs = [RunColumn(run_metrics(load_run(path)), None) for path in study_runs.values()]
    summary = next(section for section in build_sections(runs, ()) if section.title == "Summary")
    assert [bullet.split(":", 1)[0] for bullet in summary.bullets] == [
        metric.label for metric in SUMMARY_METRICS
    ]
    assert all(len(bullet.split(":", 1)[1].strip()) > 20 for bullet in summary.bullets)
