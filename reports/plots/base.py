"""What every figure of the report shares: the ``Plot`` it becomes, its PNG bytes, the colour of a
series and a readable log axis.

Figures are built on ``matplotlib.figure.Figure`` with an Agg canvas, never through pyplot, so no
global backend state or display is touched and the same bytes go to a file and into report.html.
The per-run, per-record and rate-cell figures (``runs``, ``records``, ``rates``) import these
primitives from here rather than from one another.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

DPI = 100
_MS = FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1 else f"{value:g}")


@dataclass(frozen=True)
class Plot:
    key: str
    filename: str
    title: str
    png: bytes


def png_bytes(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def colour(index: int) -> str:
    return f"C{index % 10}"


def readable_log(axis: Axis) -> None:
    """A log axis labelled at 1, 2 and 5 x 10^k in plain figures, so even an axis shorter than a
    decade carries several labelled ticks (never one lone tick that makes 16x look like 4x)."""
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(_MS)
    axis.set_minor_formatter(NullFormatter())
