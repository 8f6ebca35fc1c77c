"""Metrics that only per-request records can give, as pure functions over arrays and frames.

- Percentiles are exact: ``numpy.percentile`` with linear interpolation between the two nearest
  ranks (numpy's default, the same as Excel's PERCENTILE.INC), over unrounded latencies. Locust's
  own percentiles (its CSVs and web UI) come from response times rounded to about two significant
  digits and taken at the nearest rank, so they can be 50 ms off at 1-10 s.
- A percentile on too few samples is kept but flagged (``MIN_SAMPLES``): a p99 needs at least 100
  requests before it is more than the second-largest one.
- Token throughput over time bins each successful measured request's tokens at the second its
  answer arrived, so the series summed over a cell's column is that cell's successful tokens.
- The peak is the best sustained ``PEAK_WINDOW_S`` window of that series, not the best cell's mean.
- Repeats give a mean and a 95% confidence interval from the t-distribution with n-1 degrees of
  freedom (n = repeats).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
# Fewest samples a percentile needs to mean more than "one of the largest few".
MIN_SAMPLES = {50.0: 1, 90.0: 10, 95.0: 20, 99.0: 100, 99.9: 1000}
PEAK_WINDOW_S = 10
BIN_S = 1.0
CONFIDENCE = 0.95


def percentile_label(percentile: float) -> str:
    return f"p{percentile:g}"


@dataclass(frozen=True)
class LatencyDistribution:
    """Exact latency figures of a set of requests (None for an empty set)."""

    count: int
    mean_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    p99_9_ms: float | None
    max_ms: float | None

    def at(self, percentile: float) -> float | None:
        return getattr(self, f"p{percentile:g}_ms".replace(".", "_"))

    def thin(self, percentile: float) -> bool:
        """Whether ``percentile`` rests on fewer samples than ``MIN_SAMPLES`` asks."""
        return self.count < MIN_SAMPLES[percentile]


def latency_distribution(latencies_ms: Sequence[float] | np.ndarray) -> LatencyDistribution:
    values = np.asarray(latencies_ms, dtype=float)
    values = values[~np.isnan(values)]
    if not len(values):
        return LatencyDistribution(0, None, None, None, None, None, None, None)
    p50, p90, p95, p99, p999 = (float(v) for v in np.percentile(values, PERCENTILES, method="linear"))
    return LatencyDistribution(
        count=len(values),
        mean_ms=float(values.mean()),
        p50_ms=p50,
        p90_ms=p90,
        p95_ms=p95,
        p99_ms=p99,
        p99_9_ms=p999,
        max_ms=float(values.max()),
    )


@dataclass(frozen=True)
class TimeSplit:
    """Where a cell's latency goes: the server's queue and inference time and the rest (network,
    HTTP, serialisation, the client), over its successful requests that carry timing headers."""

    requests: int
    mean_queue_ms: float
    p95_queue_ms: float
    mean_inference_ms: float
    p95_inference_ms: float
    mean_rest_ms: float
    p95_rest_ms: float
    rest_is: str


REST_FROM_TOTAL = "latency - x-total-time"
REST_FROM_PARTS = "latency - queue - inference"


def time_split(frame: pd.DataFrame) -> TimeSplit | None:
    """From successful measured records with ``queue_ms`` and ``inference_ms``; None without any.

    The rest is ``latency - server_total_ms`` where every such request has ``x-total-time`` (the
    server's own end-to-end time, tokenization included), else ``latency - queue - inference``."""
    timed = frame[frame["ok"] & frame["queue_ms"].notna() & frame["inference_ms"].notna()]
    if timed.empty:
        return None
    if timed["server_total_ms"].notna().all():
        rest, rest_is = timed["latency_ms"] - timed["server_total_ms"], REST_FROM_TOTAL
    else:
        rest, rest_is = timed["latency_ms"] - timed["queue_ms"] - timed["inference_ms"], REST_FROM_PARTS

    def mean_p95(values: pd.Series) -> tuple[float, float]:
        return float(values.mean()), float(np.percentile(values, 95))

    queue, inference, rest_figures = (
        mean_p95(timed["queue_ms"]),
        mean_p95(timed["inference_ms"]),
        mean_p95(rest),
    )
    return TimeSplit(len(timed), *queue, *inference, *rest_figures, rest_is)


def throughput_series(frame: pd.DataFrame, start_s: float, end_s: float, tokens_column: str) -> pd.DataFrame:
    """Successful tokens per ``BIN_S`` bin from ``start_s`` to ``end_s``, one column per cell (a
    request counts in the bin its answer arrived in). Index: the bin's start in seconds since
    ``start_s``. Values are tokens/s; the row sum is the run's series."""
    bins = max(1, math.ceil((end_s - start_s) / BIN_S))
    ok = frame[frame["ok"]]
    index = np.clip(((ok["completed_at"] - start_s) // BIN_S).to_numpy(dtype=float), 0, bins - 1).astype(int)
    tokens = ok[tokens_column].to_numpy(dtype=float)
    columns = {}
    for cell in sorted(frame["cell"].unique()):
        mine = (ok["cell"] == cell).to_numpy()
        columns[cell] = np.bincount(index[mine], weights=tokens[mine], minlength=bins) / BIN_S
    return pd.DataFrame(columns, index=pd.Index(np.arange(bins) * BIN_S, name="second"))


@dataclass(frozen=True)
class PeakWindow:
    """The best sustained window of the run's token throughput, in seconds since the run's start."""

    start_s: float
    end_s: float
    tokens_per_s: float
    cells: tuple[str, ...]  # the cells whose tokens fall in the window

    @property
    def describe(self) -> str:
        return f"{self.start_s:g}-{self.end_s:g} s ({', '.join(self.cells) or 'no cell'})"


def peak_window(series: pd.DataFrame, window_s: int = PEAK_WINDOW_S) -> PeakWindow | None:
    """The ``window_s`` consecutive bins with the most tokens, as tokens/s over the window (the
    earliest such window on a tie); a run shorter than the window gives its whole length."""
    if series.empty:
        return None
    total = series.sum(axis=1).to_numpy()
    width = min(int(window_s / BIN_S), len(total))
    sums = np.convolve(total, np.ones(width), mode="valid") * BIN_S
    first = int(np.argmax(sums))
    inside = series.iloc[first : first + width]
    cells = tuple(cell for cell in series.columns if inside[cell].sum() > 0)
    start = float(series.index[first])
    return PeakWindow(start, start + width * BIN_S, float(sums[first]) / (width * BIN_S), cells)


@dataclass(frozen=True)
class MeanCI:
    """A figure's mean over n repeats and its 95% confidence interval (t-distribution, n-1 degrees
    of freedom); ``half_width`` is None with a single repeat."""

    n: int
    mean: float
    half_width: float | None

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    def overlaps(self, other: MeanCI) -> bool:
        """Whether the two intervals overlap: the difference lies within run-to-run noise."""
        if self.half_width is None or other.half_width is None:
            return False
        return self.low <= other.high and other.low <= self.high


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> MeanCI | None:
    finite = [float(value) for value in values if value is not None and math.isfinite(value)]
    if not finite:
        return None
    mean = float(np.mean(finite))
    if len(finite) < 2:
        return MeanCI(len(finite), mean, None)
    t = float(stats.t.ppf((1 + confidence) / 2, len(finite) - 1))
    return MeanCI(len(finite), mean, t * float(np.std(finite, ddof=1)) / math.sqrt(len(finite)))
