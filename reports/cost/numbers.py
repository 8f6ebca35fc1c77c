"""Numbers in the report's sentences at the precision they carry: a peak rate from a trace or a price
per million tokens is good to a few percent, so six digits ("0.0413889 requests/s") say more than
was measured."""

from __future__ import annotations


def three_figures(value: float) -> str:
    """``value`` to three significant figures (14.9283 -> "14.9", 0.0413889 -> "0.0414"); from 100 up,
    whole numbers with thousands separators (12345.6 -> "12,346"), never exponent form there."""
    if abs(value) >= 99.95:
        return f"{value:,.0f}"
    return f"{value:.3g}"
