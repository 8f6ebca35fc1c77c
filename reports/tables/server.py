"""The report's "Server telemetry" section: per run, each cell's mean queue, pass size, pass time, CPU
and GPU utilization from the target's sampled ``/metrics``, the timeline plot, and a line for every
run that sampled nothing, saying why (not measured is never shown as zero)."""

from __future__ import annotations

from collections.abc import Sequence

from reports.metrics.server import P95_BIN_S, RunTelemetry, plot_key
from reports.tables.base import Section, Table

NOT_MEASURED = "not measured"

COLUMNS = (
    ("mean queue (requests)", "queue_requests_mean", ",.1f"),
    ("mean queue (tokens)", "queue_tokens_mean", ",.0f"),
    ("requests per pass", "pass_requests_mean", ",.2f"),
    ("inputs per pass", "pass_inputs_mean", ",.1f"),
    ("tokens per pass", "pass_tokens_mean", ",.0f"),
    ("pass time (ms)", "pass_ms_mean", ",.1f"),
    ("CPU (cores)", "cpu_cores_mean", ",.2f"),
    ("GPU utilization (%)", "gpu_utilization_pct_mean", ",.0f"),
)

DEFINITIONS = (
    "mean queue: the server's `embed_queue_requests` and `embed_queue_tokens` (admitted, not yet taken by "
    "a forward pass), averaged over the samples inside the cell's window (cells.csv start to end)",
    "per pass: the change of a pass histogram's sum over the change of its count between the cell's first "
    "and last sample (`embed_batch_requests`, `embed_batch_size`, `embed_batch_tokens` without padding, "
    "`embed_batch_seconds`): the mean over the passes the cell saw",
    "CPU: the change of `process_cpu_seconds_total` over the time between those samples, in cores (1.0 = "
    "one core busy all the time); GPU utilization: NVML's `embed_gpu_utilization_percent`, averaged",
    f"{NOT_MEASURED}: the series is absent (a CPU server has no GPU series; another server may export "
    "none of these) or the cell held fewer than two samples",
    f"on the timeline, the client's successful tokens/s (1 s bins) and p95 latency ({P95_BIN_S:g} s bins, "
    "all measured requests, by completion time) sit above the server's series",
)


def _value(value: float | None, spec: str) -> str:
    return NOT_MEASURED if value is None else format(value, spec)


def cells_table(run: RunTelemetry) -> Table:
    repeats = any(cell.repeat for cell in run.cells)
    rows = tuple(
        (
            cell.cell + (f" (repeat {cell.repeat + 1})" if repeats else ""),
            f"{cell.samples:,}",
            *(_value(getattr(cell, attribute), spec) for _, attribute, spec in COLUMNS),
        )
        for cell in run.cells
    )
    return Table(
        f"server_telemetry_{run.label}",
        f"Server telemetry per cell: {run.label}",
        f"sampled from {run.url} while the run went on (server_metrics.csv)",
        ("cell", "samples", *(title for title, _, _ in COLUMNS)),
        rows,
    )


def telemetry_section(runs: Sequence[RunTelemetry]) -> Section | None:
    """None when no run sampled anything and none says why (nothing to report either way)."""
    if not runs:
        return None
    measured = [(index, run) for index, run in enumerate(runs) if run.measured]
    missing = tuple(
        f"{run.label}: server telemetry {NOT_MEASURED}: {run.note}" for run in runs if not run.measured
    )
    if not measured:
        return Section(
            "Server telemetry", text="No run sampled its server's metrics endpoint.", bullets=missing
        )
    return Section(
        "Server telemetry",
        text="What the target itself said while the run went on: its queue, the size and time of its forward "
        "passes, its CPU and GPU, on the run's timeline beside the client's tokens/s and p95, and per cell.",
        tables=tuple(cells_table(run) for _, run in measured),
        bullets=(*missing, *DEFINITIONS),
        plots=tuple(plot_key(index) for index, _ in measured),
    )
