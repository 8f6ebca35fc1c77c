"""Tables only per-request records can fill: exact percentiles, where the time goes, the peak
window, repeats and the token-count check. One table per run where the columns are figures; one
column per run where the rows are cells, as in ``cell_tables``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from reports.cost.columns import RunColumn
from reports.metrics.record_cells import REPEAT_FIGURES
from reports.metrics.records import MIN_SAMPLES, PEAK_WINDOW_S, PERCENTILES, LatencyDistribution, MeanCI
from reports.metrics.records import percentile_label as label
from reports.metrics.runs import CellMetrics
from reports.metrics.token_counts import COUNT_DESCRIPTIONS
from reports.tables.base import MISSING, Table, fmt, header
from reports.tables.cells import CELL_KEYS

THIN = "†"
THIN_NOTE = (
    f"{THIN}: rests on too few requests to mean much ("
    + ", ".join(f"{label(p)} from fewer than {n:,}" for p, n in MIN_SAMPLES.items() if n > 1)
    + ")"
)
WITHIN_NOISE = "≈"


def _keys(cell: CellMetrics) -> tuple[str, str, str]:
    return (str(cell.concurrency), str(cell.batch_size), str(cell.passage_tokens))


def _percentile_row(distribution: LatencyDistribution | None) -> tuple[str, ...]:
    if distribution is None or not distribution.count:
        return ("0", *(MISSING for _ in PERCENTILES), MISSING)
    values = tuple(
        fmt(distribution.at(p), ",.0f") + (THIN if distribution.thin(p) else "") for p in PERCENTILES
    )
    return (f"{distribution.count:,}", *values, fmt(distribution.max_ms, ",.0f"))


def percentile_tables(run: RunColumn) -> tuple[Table, ...]:
    """All requests (the study's definition) and successful requests, side by side, for one run."""
    titles = (*CELL_KEYS, "requests", *(label(p) for p in PERCENTILES), "max")
    tables = []
    for key, who, of_cell in (
        ("all", "all requests (the study's definition)", lambda c: c.latency_all),
        ("ok", "successful requests", lambda c: c.latency_ok),
    ):
        rows = tuple((*_keys(cell), *_percentile_row(of_cell(cell))) for cell in run.metrics.cells)
        tables.append(
            Table(
                f"percentiles_{key}_{run.label}",
                f"Latency percentiles (ms), {who}: {run.label}",
                "exact, from every request's unrounded latency; numpy percentiles with linear interpolation "
                f"between the nearest ranks; {THIN_NOTE}",
                titles,
                rows,
            )
        )
    return tuple(tables)


def time_split_table(run: RunColumn) -> Table | None:
    """Mean and p95 of queue, inference and the rest per cell; None when no cell has timing headers."""
    cells = [cell for cell in run.metrics.cells if cell.time_split]
    if not cells:
        return None
    rows = tuple(
        (
            *_keys(cell),
            f"{cell.time_split.requests:,}",
            *(
                fmt(value, ",.1f")
                for value in (
                    cell.time_split.mean_queue_ms,
                    cell.time_split.p95_queue_ms,
                    cell.time_split.mean_inference_ms,
                    cell.time_split.p95_inference_ms,
                    cell.time_split.mean_rest_ms,
                    cell.time_split.p95_rest_ms,
                )
            ),
        )
        for cell in cells
    )
    rest = sorted({cell.time_split.rest_is for cell in cells})
    return Table(
        f"time_split_{run.label}",
        f"Where the time goes (ms): {run.label}",
        "successful requests with the server's timing headers; queue = x-queue-time, inference = "
        f"x-inference-time, rest (network, HTTP, client) = {' or '.join(rest)}",
        (
            *CELL_KEYS,
            "requests",
            "queue mean",
            "queue p95",
            "inference mean",
            "inference p95",
            "rest mean",
            "rest p95",
        ),
        rows,
    )


def peak_window_table(runs: Sequence[RunColumn]) -> Table:
    """The true peak beside the study's 'best cell' figure."""

    def window(run: RunColumn) -> str:
        peak = run.metrics.peak_window
        return peak.describe if peak else "— (no records)"

    def window_rate(run: RunColumn) -> str:
        peak = run.metrics.peak_window
        return fmt(peak.tokens_per_s if peak else None, ",.0f")

    rows = (
        ("peak: best sustained window (tokens/s)", *(window_rate(run) for run in runs)),
        ("window (seconds since the run's start; cells in it)", *(window(run) for run in runs)),
        (
            "best cell (the study's 'peak', tokens/s)",
            *(fmt(run.metrics.peak_throughput_tokens_per_s, ",.0f") for run in runs),
        ),
        ("best cell", *(run.metrics.peak_cell or MISSING for run in runs)),
        ("tokens counted", *(run.metrics.token_count for run in runs)),
    )
    return Table(
        "peak",
        "Peak token throughput",
        f"peak = the {PEAK_WINDOW_S} consecutive 1 s bins with the most successful tokens, divided by "
        f"{PEAK_WINDOW_S} s (a request counts when its answer arrives); best cell = the cell with the "
        "highest successful tokens / cell duration",
        header(["figure"], runs),
        rows,
    )


def _mean_ci(ci: MeanCI | None, spec: str) -> str:
    if ci is None:
        return MISSING
    if ci.half_width is None:
        return f"{fmt(ci.mean, spec)} (n=1)"
    return f"{fmt(ci.mean, spec)} ± {fmt(ci.half_width, spec)} (n={ci.n})"


def repeat_tables(runs: Sequence[RunColumn]) -> tuple[Table, ...]:
    """Per figure: each cell's mean ± 95% CI over repeats, a column per run; ≈ marks a run whose
    interval overlaps the first run's (the difference lies within run-to-run noise)."""
    cells = sorted({cell.key for run in runs for cell in run.metrics.cells})
    tables = []
    for key, title in REPEAT_FIGURES:
        spec = ",.0f"

        def figure(run: RunColumn, cell_key, key: str = key) -> MeanCI | None:
            cell = run.metrics.cell(cell_key)
            return cell.repeats.get(key) if cell and cell.repeats else None

        rows = []
        for cell_key in cells:
            reference = figure(runs[0], cell_key)
            values = []
            for index, run in enumerate(runs):
                ci = figure(run, cell_key)
                noise = index > 0 and ci is not None and reference is not None and ci.overlaps(reference)
                values.append(_mean_ci(ci, spec) + (f" {WITHIN_NOISE}" if noise else ""))
            rows.append(
                (str(cell_key.concurrency), str(cell_key.batch_size), str(cell_key.passage_tokens), *values)
            )
        tables.append(
            Table(
                f"repeats_{key}",
                f"{title[0].upper()}{title[1:]} over repeats",
                "mean over the repeats of each repeat's figure ± the half-width of its 95% confidence "
                f"interval (t-distribution, n-1 degrees of freedom); {WITHIN_NOISE}: the interval overlaps "
                f"{runs[0].label}'s, so the difference lies within run-to-run noise",
                header(CELL_KEYS, runs),
                tuple(rows),
            )
        )
    return tuple(tables)


def token_count_table(runs: Sequence[RunColumn]) -> Table:
    def check(of: Callable) -> Callable[[RunColumn], str]:
        return lambda run: of(run.metrics.token_check) if run.metrics.token_check else MISSING

    rows = (
        ("figures use", *(COUNT_DESCRIPTIONS[run.metrics.token_count] for run in runs)),
        ("requests with server usage", *map(check(lambda c: f"{c.requests_with_usage:,}"), runs)),
        ("tokens, client count", *map(check(lambda c: f"{c.tokens_client:,.0f}"), runs)),
        ("tokens, server count", *map(check(lambda c: f"{c.tokens_server:,.0f}"), runs)),
        ("server / client", *map(check(lambda c: f"{c.ratio:.3f}"), runs)),
        ("server extra tokens per input", *map(check(lambda c: f"{c.extra_per_input:,.1f}"), runs)),
        ("verdict", *map(check(lambda c: c.cause or "agree within special tokens"), runs)),
    )
    return Table(
        "token_counts",
        "Token counts: client and server",
        "over successful requests whose response reported usage; the two agree when the server adds "
        "at most a few special tokens per input",
        header(["figure"], runs),
        rows,
    )


def token_warnings(runs: Sequence[RunColumn]) -> tuple[str, ...]:
    """One line per run whose server count strays from the client's, naming the likely cause."""
    return tuple(
        f"{run.label}: the server's token count is {run.metrics.token_check.ratio:.2f}x the client's; likely "
        f"cause: {run.metrics.token_check.cause}"
        for run in runs
        if run.metrics.token_check and run.metrics.token_check.cause
    )
