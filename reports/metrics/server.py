"""The server's figures over a run, from its sampled Prometheus series, beside the client's.

Pure functions over ``server_metrics.csv`` (long format) and the request records:

- gauges (what waits, the GPU's utilization, memory and power) are taken as sampled;
- a figure per forward pass is a ratio of two counters between consecutive scrapes, e.g. the mean
  inputs per pass in an interval is ``Δ embed_batch_size_sum / Δ embed_batch_size_count``; an
  interval without a pass has none (not zero);
- the CPU in use is ``Δ process_cpu_seconds_total / Δt``, in cores;
- a counter that went down (the server restarted) gives no figure for that interval.

Per cell, gauges are averaged over the samples inside the cell's window, and pass figures are the
counters' change from the first to the last sample inside it -- the exact mean over the passes the
window saw, not a mean of interval means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reports.load.records import Records
from reports.load.server_metrics import CellSpan, ServerSamples

CLIENT_BIN_S = 1.0  # tokens/s bins
P95_BIN_S = 5.0  # p95 over the requests that completed in each such bin

# Gauges drawn as sampled: column -> (metric, how several label sets combine).
GAUGES = {
    "queue_requests": ("embed_queue_requests", "sum"),
    "queue_tokens": ("embed_queue_tokens", "sum"),
    "in_flight_requests": ("embed_requests_in_flight", "sum"),
    "gpu_utilization_pct": ("embed_gpu_utilization_percent", "mean"),
    "gpu_memory_used_bytes": ("embed_gpu_memory_used_bytes", "sum"),
    "gpu_power_w": ("embed_gpu_power_watts", "sum"),
}
# Per-pass means: column -> (histogram, scale).
PASS_MEANS = {
    "pass_requests": ("embed_batch_requests", 1.0),
    "pass_inputs": ("embed_batch_size", 1.0),
    "pass_tokens": ("embed_batch_tokens", 1.0),
    "pass_padded_tokens": ("embed_batch_padded_tokens", 1.0),
    "pass_ms": ("embed_batch_seconds", 1000.0),
}
CPU_SECONDS = "process_cpu_seconds_total"


def plot_key(index: int) -> str:
    """The key of the timeline plot of the ``index``-th run (the plot and the section share it)."""
    return f"server_telemetry_{index}"


@dataclass(frozen=True)
class CellTelemetry:
    """One cell's server figures; None: not measured (no such series, or too few samples)."""

    cell: str
    repeat: int
    samples: int
    queue_requests_mean: float | None
    queue_tokens_mean: float | None
    pass_requests_mean: float | None
    pass_inputs_mean: float | None
    pass_tokens_mean: float | None
    pass_ms_mean: float | None
    cpu_cores_mean: float | None
    gpu_utilization_pct_mean: float | None


@dataclass(frozen=True)
class RunTelemetry:
    """A run's server figures over time (``series``, indexed by epoch seconds), the client's
    (``client``: tokens_per_s, p95_latency_ms), its cells' windows and figures, and ``note`` when
    nothing was measured."""

    label: str
    url: str | None
    note: str
    series: pd.DataFrame | None
    client: pd.DataFrame | None
    spans: tuple[CellSpan, ...]
    cells: tuple[CellTelemetry, ...]

    @property
    def measured(self) -> bool:
        return self.series is not None

    @property
    def origin_s(self) -> float:
        """Time zero of the run's timeline: its first cell's start, else its first sample."""
        starts = [span.start_s for span in self.spans]
        if self.series is not None and len(self.series):
            starts.append(float(self.series.index.min()))
        return min(starts) if starts else 0.0


def _wide(frame: pd.DataFrame, metric: str, how: str) -> pd.Series | None:
    """One metric over time, its label sets combined (summed or averaged) per scrape."""
    rows = frame[frame["metric"] == metric]
    if rows.empty:
        return None
    return rows.groupby("time")["value"].agg(how)


def _ratio_of_deltas(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """Δnumerator / Δdenominator between consecutive samples; NaN where nothing happened or a
    counter went down."""
    change, count = numerator.diff(), denominator.diff()
    valid = (count > 0) & (change >= 0)
    return (change / count).where(valid)


def server_series(samples: pd.DataFrame) -> pd.DataFrame:
    """Columns of GAUGES, PASS_MEANS and ``cpu_cores`` (those the samples allow) per scrape time."""
    columns: dict[str, pd.Series] = {}
    for column, (metric, how) in GAUGES.items():
        series = _wide(samples, metric, how)
        if series is not None:
            columns[column] = series
    for column, (histogram, scale) in PASS_MEANS.items():
        total, count = _wide(samples, f"{histogram}_sum", "sum"), _wide(samples, f"{histogram}_count", "sum")
        if total is not None and count is not None:
            columns[column] = _ratio_of_deltas(total, count) * scale
    cpu = _wide(samples, CPU_SECONDS, "sum")
    if cpu is not None:
        times = pd.Series(cpu.index.to_numpy(dtype=float), index=cpu.index)
        columns["cpu_cores"] = _ratio_of_deltas(cpu, times)
    ups = _wide(samples, "up", "max")
    frame = pd.DataFrame(columns).sort_index()
    if ups is not None:  # failed scrapes carry no series: keep only the answering ones
        frame = frame[frame.index.isin(ups[ups > 0].index)]
    return frame


def client_series(requests: pd.DataFrame) -> pd.DataFrame | None:
    """Successful tokens/s (client count) in 1 s bins and p95 latency (all requests) in 5 s bins,
    by completion time, over measured requests that were sent; None without any."""
    if requests.empty:
        return None
    done = requests.dropna(subset=["completed_at"])
    if done.empty:
        return None
    start = float(np.floor(done["completed_at"].min()))
    ok = done[done["ok"]]
    tokens = ok.groupby(np.floor((ok["completed_at"] - start) / CLIENT_BIN_S))["tokens_client"].sum()
    p95 = done.groupby(np.floor((done["completed_at"] - start) / P95_BIN_S))["latency_ms"].quantile(0.95)
    frame = pd.DataFrame(
        {
            "tokens_per_s": pd.Series(
                tokens.to_numpy() / CLIENT_BIN_S, index=start + tokens.index * CLIENT_BIN_S + CLIENT_BIN_S / 2
            ),
        }
    )
    p95_series = pd.Series(p95.to_numpy(), index=start + p95.index * P95_BIN_S + P95_BIN_S / 2)
    return frame.join(p95_series.rename("p95_latency_ms"), how="outer").sort_index()


def measured_requests(records: Records | None) -> pd.DataFrame | None:
    """Every measured request that was sent, closed-loop and rate cells alike (warm-ups and dropped
    open-loop arrivals left out); None without records."""
    if records is None:
        return None
    frames = [records.measured]
    if records.rate is not None:
        rate = records.rate
        frames.append(rate[~rate["warmup"] & ~rate["dropped"]])
    return pd.concat(frames, ignore_index=True)


def _counter_mean(samples: pd.DataFrame, histogram: str, start: float, end: float) -> float | None:
    """Δsum / Δcount of a histogram between the first and last sample in [start, end]."""
    total, count = _wide(samples, f"{histogram}_sum", "sum"), _wide(samples, f"{histogram}_count", "sum")
    if total is None or count is None:
        return None
    inside = count[(count.index >= start) & (count.index <= end)].index
    if len(inside) < 2:
        return None
    passes = count[inside[-1]] - count[inside[0]]
    change = total[inside[-1]] - total[inside[0]]
    return float(change / passes) if passes > 0 and change >= 0 else None


def _cpu_mean(samples: pd.DataFrame, start: float, end: float) -> float | None:
    cpu = _wide(samples, CPU_SECONDS, "sum")
    if cpu is None:
        return None
    inside = cpu[(cpu.index >= start) & (cpu.index <= end)]
    if len(inside) < 2 or inside.iloc[-1] < inside.iloc[0]:
        return None
    return float((inside.iloc[-1] - inside.iloc[0]) / (inside.index[-1] - inside.index[0]))


def _gauge_mean(series: pd.DataFrame, column: str, start: float, end: float) -> float | None:
    if column not in series.columns:
        return None
    values = series.loc[(series.index >= start) & (series.index <= end), column].dropna()
    return float(values.mean()) if len(values) else None


def cell_telemetry(samples: pd.DataFrame, series: pd.DataFrame, span: CellSpan) -> CellTelemetry:
    end = span.end_s if span.end_s is not None else float(series.index.max()) if len(series) else span.start_s
    inside = int(((series.index >= span.start_s) & (series.index <= end)).sum())
    return CellTelemetry(
        cell=span.cell,
        repeat=span.repeat,
        samples=inside,
        queue_requests_mean=_gauge_mean(series, "queue_requests", span.start_s, end),
        queue_tokens_mean=_gauge_mean(series, "queue_tokens", span.start_s, end),
        pass_requests_mean=_counter_mean(samples, "embed_batch_requests", span.start_s, end),
        pass_inputs_mean=_counter_mean(samples, "embed_batch_size", span.start_s, end),
        pass_tokens_mean=_counter_mean(samples, "embed_batch_tokens", span.start_s, end),
        pass_ms_mean=(
            None
            if (mean := _counter_mean(samples, "embed_batch_seconds", span.start_s, end)) is None
            else mean * 1000.0
        ),
        cpu_cores_mean=_cpu_mean(samples, span.start_s, end),
        gpu_utilization_pct_mean=_gauge_mean(series, "gpu_utilization_pct", span.start_s, end),
    )


def run_telemetry(
    label: str, samples: ServerSamples, spans: Sequence[CellSpan], requests: pd.DataFrame | None
) -> RunTelemetry:
    """A run's telemetry: the server's series and per-cell figures, the client's series beside them."""
    client = client_series(requests) if requests is not None else None
    if samples.frame is None:
        return RunTelemetry(label, samples.url, samples.note, None, client, tuple(spans), ())
    series = server_series(samples.frame)
    cells = tuple(cell_telemetry(samples.frame, series, span) for span in spans)
    return RunTelemetry(label, samples.url, "", series, client, tuple(spans), cells)
