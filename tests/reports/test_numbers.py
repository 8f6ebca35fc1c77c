"""The report's sentences give rates and prices to three significant figures."""

from __future__ import annotations

import pytest

from reports.cost.numbers import three_figures


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0413889, "0.0414"),
        (14.9283, "14.9"),
        (0.1579, "0.158"),
        (0.018, "0.018"),
        (50.0, "50"),
        (21.04, "21"),
        (99.94, "99.9"),
        (99.96, "100"),
        (999.6, "1,000"),
        (12345.6, "12,346"),
        (0.0, "0"),
    ],
)
def test_three_significant_figures_never_in_exponent_form_from_one_hundred(value, text) -> None:
    assert three_figures(value) == text
