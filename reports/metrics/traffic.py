"""Figures of real traffic: per passage-length band, per request shape, and over time against a target.

A grid cell has one shape, so its figures need no breakdown. A replayed trace (``run --trace``) or
a rate cell whose passages draw their lengths from a distribution mixes shapes in one cell, and two
questions follow that the cell's pooled figures cannot answer:

- **Which requests are slow?** :func:`length_bands` groups the measured requests by their longest
  passage (the length a server pads the request to) in power-of-two bands, and
  :func:`shape_figures` by batch size and band: requests, success, p50 and p95 latency.
- **How much compute is padding?** A server pads every input of a forward pass to the longest one.
  Per request that waste is ``1 - tokens / (batch_size x longest)``: exactly what the bundled server
  computes in vain in ``--batching none`` mode, where each request is one forward pass. With
  micro-batching, requests share a pass and the server's own counters tell
  (``server_padding`` in run.json, from ``/metrics``).
- **Was the target met, and when?** :func:`slo_windows` cuts the replay into equal windows of
  planned send time and gives each its requests, success, p95 and *attainment*: the share of the
  offered requests that succeeded within the latency target (dropped and failed ones miss).

Reads the measured rows of ``requests.csv.gz`` (``reports.load.records``); returns dataclasses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

SLO_WINDOWS = 12  # a replay is cut into this many windows of planned time


def band_of(tokens: int) -> tuple[int, int]:
    """The power-of-two band ``(low, high]`` holding ``tokens``: 1-16, 17-32, 33-64, ..."""
    high = max(16, 1 << max(int(tokens) - 1, 0).bit_length())
    return (1 if high == 16 else high // 2 + 1, high)


def band_label(band: tuple[int, int]) -> str:
    return f"{band[0]}-{band[1]}"


@dataclass(frozen=True)
class GroupFigures:
    """Measured requests of one group: counts, success and latency percentiles (ms, from the planned
    send time), mean tokens per request and the padding share of what a lone forward pass computes."""

    label: str
    requests: int
    succeeded: int
    p50_ms: float | None
    p95_ms: float | None
    mean_tokens: float
    padding_pct: float

    @property
    def success_pct(self) -> float:
        return 100.0 * self.succeeded / self.requests if self.requests else 0.0


def _figures(label: str, rows: pd.DataFrame) -> GroupFigures:
    ok = rows[(rows["ok"] == 1) & rows["latency_ms"].notna()]
    latencies = np.sort(ok["latency_ms"].to_numpy(dtype=float))
    padded = float((rows["batch_size"] * rows["passage_tokens"]).sum())
    return GroupFigures(
        label=label,
        requests=len(rows),
        succeeded=len(ok),
        p50_ms=_nearest_rank(latencies, 50.0),
        p95_ms=_nearest_rank(latencies, 95.0),
        mean_tokens=float(rows["tokens_client"].mean()) if len(rows) else 0.0,
        padding_pct=100.0 * (1.0 - float(rows["tokens_client"].sum()) / padded) if padded else 0.0,
    )


def _nearest_rank(ordered: np.ndarray, percentile: float) -> float | None:
    if not len(ordered):
        return None
    return float(ordered[max(math.ceil(percentile / 100.0 * len(ordered)) - 1, 0)])


def varied_lengths(measured: pd.DataFrame) -> bool:
    """Whether any request's passages differ in length (their tokens fall short of batch x longest)."""
    return bool(len(measured)) and bool(
        (measured["tokens_client"] < measured["batch_size"] * measured["passage_tokens"]).any()
    )


def length_bands(measured: pd.DataFrame) -> list[GroupFigures]:
    """The measured requests by the band of their longest passage, shortest band first."""
    bands = measured["passage_tokens"].map(band_of)
    return [
        _figures(band_label(band), rows) for band, rows in sorted(measured.groupby(bands), key=lambda g: g[0])
    ]


def band_groups(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Requests by batch size and the power-of-two band of the longest passage, ``b=8 t=129-256``,
    smallest first: a trace of a thousand distinct lengths gives a handful of groups."""
    keys = pd.Series(
        list(zip(rows["batch_size"], rows["passage_tokens"].map(band_of), strict=True)), index=rows.index
    )
    return [
        (f"b={batch} t={band_label(band)}", part)
        for (batch, band), part in sorted(rows.groupby(keys), key=lambda g: g[0])
    ]


def shape_figures(measured: pd.DataFrame) -> list[GroupFigures]:
    """The measured requests by batch size and band of the longest passage."""
    return [_figures(label, rows) for label, rows in band_groups(measured)]


@dataclass(frozen=True)
class SloWindow:
    """One window of planned send time (seconds from the cell's first planned request)."""

    start_s: float
    end_s: float
    offered: int
    succeeded: int
    within_target: int
    p95_ms: float | None

    @property
    def success_pct(self) -> float:
        return 100.0 * self.succeeded / self.offered if self.offered else 0.0

    @property
    def attainment_pct(self) -> float:
        return 100.0 * self.within_target / self.offered if self.offered else 0.0


def within_target(rows: pd.DataFrame, target_ms: float) -> pd.Series:
    return (rows["ok"] == 1) & (rows["latency_ms"] <= target_ms)


def slo_windows(measured: pd.DataFrame, target_ms: float, windows: int = SLO_WINDOWS) -> list[SloWindow]:
    """The replay in ``windows`` equal windows of planned time: offered (dropped ones included),
    succeeded, within the target, p95 of the successes."""
    if not len(measured):
        return []
    planned = measured["planned_at"].to_numpy(dtype=float)
    start, end = float(planned.min()), float(planned.max())
    width = max((end - start) / windows, 1e-9)
    index = np.minimum(((planned - start) / width).astype(int), windows - 1)
    result = []
    for number in range(windows):
        rows = measured[index == number]
        ok = np.sort(rows.loc[rows["ok"] == 1, "latency_ms"].dropna().to_numpy(dtype=float))
        result.append(
            SloWindow(
                start_s=number * width,
                end_s=(number + 1) * width,
                offered=len(rows),
                succeeded=int((rows["ok"] == 1).sum()),
                within_target=int(within_target(rows, target_ms).sum()),
                p95_ms=_nearest_rank(ok, 95.0),
            )
        )
    return result


@dataclass(frozen=True)
class TrafficFigures:
    """One run's traffic breakdown: bands and shapes when lengths vary, SLO windows when the run is a
    replayed trace run with ``--slo-p95-ms`` (run.json ``trace.slo_p95_ms``), overall attainment with them."""

    bands: tuple[GroupFigures, ...]
    shapes: tuple[GroupFigures, ...]
    windows: tuple[SloWindow, ...]
    target_ms: float | None
    attainment_pct: float | None
    trace: dict | None  # run.json "trace"
    server_padding: dict | None  # run.json "server_padding"


def traffic_figures(measured: pd.DataFrame, info: dict) -> TrafficFigures | None:
    """The breakdown, or None for a run of fixed shapes that replays no trace."""
    trace = info.get("trace")
    if not len(measured) or not (trace or varied_lengths(measured)):
        return None
    target = (trace or {}).get("slo_p95_ms")
    windows: Sequence[SloWindow] = slo_windows(measured, float(target)) if trace and target else ()
    attainment = 100.0 * float(within_target(measured, float(target)).mean()) if target else None
    return TrafficFigures(
        bands=tuple(length_bands(measured)),
        shapes=tuple(shape_figures(measured)),
        windows=tuple(windows),
        target_ms=float(target) if target else None,
        attainment_pct=attainment,
        trace=trace,
        server_padding=info.get("server_padding"),
    )
