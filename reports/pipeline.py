"""Run directories in, report files out: load -> metrics -> tables and plots -> exporters.

Everything that can reject the input (missing directory, unknown price, a run without any
successful request) happens in ``build_report``, before ``write_report`` creates a single file, so a
failed command never leaves a half-written or misleading report behind.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from reports.cost.columns import Column, RunColumn
from reports.cost.decision import OptionCapacity, Workload, decide
from reports.cost.pricing import (
    Price,
    choose_prices,
    hardware_mismatch,
    load_price_book,
    look_up_price,
    run_cost,
)
from reports.export.csv_files import write_cells_csv, write_rate_cells_csv, write_summary_csv
from reports.export.html import render_html
from reports.export.markdown import render_markdown
from reports.load.runs import RunData, load_run
from reports.load.server_metrics import load_cell_spans, load_server_samples
from reports.metrics.cold_start import cold_start_alerts, run_warmth
from reports.metrics.rates import RateCapacity, RateRun, rate_run
from reports.metrics.runs import RunMetrics, run_metrics
from reports.metrics.server import RunTelemetry, measured_requests, run_telemetry
from reports.metrics.study import load_study
from reports.metrics.token_counts import CLIENT, SERVER
from reports.plots.base import Plot
from reports.plots.rates import build_rate_plots
from reports.plots.records import build_record_plots
from reports.plots.runs import build_plots
from reports.plots.server import build_telemetry_plots
from reports.tables.answer import answer_section
from reports.tables.base import Section
from reports.tables.cold_start import cold_start_section
from reports.tables.decision import decision_section
from reports.tables.rates import rate_sections
from reports.tables.sections import build_sections
from reports.tables.server import telemetry_section

TITLE = "embed-bench report"


@dataclass(frozen=True)
class Report:
    intro: str
    runs: tuple[RunColumn, ...]
    columns: tuple[Column, ...]
    sections: tuple[Section, ...]
    plots: dict[str, Plot]
    rate_runs: tuple[RateRun, ...] = ()


def unique_labels(runs: Sequence[RunData]) -> list[RunData]:
    """Column titles must differ: a repeated label gets its directory appended."""
    counts = Counter(run.label for run in runs)
    return [
        replace(run, label=f"{run.label} ({run.directory})") if counts[run.label] > 1 else run for run in runs
    ]


def build_report(
    run_dirs: Sequence[Path],
    *,
    pricing: str | None = None,
    usd_per_hour: float | None = None,
    usd_per_million_tokens: float | None = None,
    compare_study: bool = False,
    count_tokens: str = CLIENT,
    workload: Workload | None = None,
    decision_prices: Sequence[str] = (),
) -> Report:
    """Everything the exporters need; raises ReportError on input that cannot be reported honestly.

    Throughput, peak and every comparison use ``count_tokens`` (client by default); a per-token
    price is charged on what the server billed (its usage, where it reports one). A run of rate
    cells only (a capacity search) is reported in the open-loop sections alone; with ``workload``
    the report opens with the decision table over every priced run."""
    loaded = unique_labels([load_run(directory) for directory in run_dirs])
    prices = choose_prices(
        [run.info.get("pricing") for run in loaded], pricing, usd_per_hour, usd_per_million_tokens
    )
    rates = [rate_run(run) for run in loaded]
    runs = closed_loop_columns(loaded, prices, rates, count_tokens)
    rate_runs = tuple(rate for rate in rates if rate is not None)
    study = load_study() if compare_study else ()
    columns = (*runs, *study)
    plots = [*build_rate_plots(rate_runs)]
    if runs:
        plots += [*build_plots(runs).values(), *build_record_plots(runs)]
    intro = report_intro(loaded, rate_runs, study)
    sections = build_sections(runs, study) if runs else ()
    # What the targets said about themselves while the runs went on (server_metrics.csv).
    telemetry = [telemetry_of(run) for run in loaded]
    plots += build_telemetry_plots(telemetry)
    sections = (*sections, *filter(None, [telemetry_section(telemetry)]))
    opening = answer_section(runs, rate_runs)
    if workload is not None:
        book = load_price_book()
        chosen = [look_up_price(book, name, "--decision-prices") for name in decision_prices]
        opening = decision_report(workload, loaded, prices, rates, chosen)
    # A cell measured on a cold server is flagged on the first screen, and listed at the end.
    warmth = [checked for run in loaded if (checked := run_warmth(run)) is not None]
    opening = replace(opening, alerts=(*opening.alerts, *cold_start_alerts(warmth)))
    cold_start = cold_start_section(warmth)
    return Report(
        intro,
        tuple(runs),
        columns,
        (opening, *sections, *rate_sections(rate_runs), *([cold_start] if cold_start else [])),
        {plot.key: plot for plot in plots},
        rate_runs,
    )


def telemetry_of(run: RunData) -> RunTelemetry:
    """What the run's target said about itself while it ran (``server_metrics.csv``), on its cells."""
    samples = load_server_samples(run.directory, run.info)
    return run_telemetry(run.label, samples, load_cell_spans(run.directory), measured_requests(run.records))


def closed_loop_columns(
    loaded: Sequence[RunData],
    prices: Sequence[Price | None],
    rates: Sequence[RateRun | None],
    count_tokens: str,
) -> list[RunColumn]:
    """One column per run that measured closed-loop cells, with its metrics and, where it has a
    price, its cost. A run of rate cells only is left out here: it has no closed-loop figures, and
    the open-loop sections report it."""
    runs = []
    for run, price, rate in zip(loaded, prices, rates, strict=True):
        if rate is not None and not has_closed_loop_cells(run):
            continue
        metrics = run_metrics(run, count_tokens)
        peak = metrics.peak_or_best_cell_tokens_per_s
        billed = billed_per_counted(metrics)
        cost = run_cost(price, metrics.mean_throughput_tokens_per_s, peak, billed) if price else None
        runs.append(RunColumn(metrics, cost))
    return runs


def report_intro(loaded: Sequence[RunData], rate_runs: Sequence[RateRun], study: Sequence[Column]) -> str:
    """The sentence that opens the report: which runs (and where they are), when it was generated,
    and where the open-loop and the study's figures are, since they come in sections of their own."""
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    intro = (
        f"{len(loaded)} run(s): "
        + ", ".join(f"{run.label} ({run.directory})" for run in loaded)
        + f". Generated {generated}."
    )
    if rate_runs:
        intro += " Runs of rate cells (open loop) are reported in sections of their own, after the closed-loop ones."
    if study:
        intro += " The reference study's published figures (January 2025) follow the summary, in a block of their own."
    return intro


def has_closed_loop_cells(run: RunData) -> bool:
    """Whether the run measured any closed-loop cell (records or Locust's CSVs)."""
    if run.records is not None and len(run.records.measured):
        return True
    return not run.stats.empty


def _provisioned(capacity: RateCapacity) -> tuple[float, float, tuple[float, float]]:
    """What the decision provisions: the lower bound of the capacity's interval (requests/s,
    tokens/s), and the interval to show (its upper end: the lowest failing rate, else the answer)."""
    high = capacity.upper_requests_per_s
    low = capacity.lower_requests_per_s
    return (
        low,
        capacity.lower_tokens_per_s,
        (low, high if high is not None else capacity.capacity_requests_per_s),
    )


def _shape_options(target: RateCapacity | None) -> str:
    """The searched shape as options (``b=1 t=16`` -> ``--batch-size 1 --passage-tokens 16``), so the
    command measures what the other options were measured on; b=1 t=128 without a search to copy."""
    match = re.fullmatch(r"b=(\d+) t=(\d+)", target.series) if target else None
    batch, tokens = match.groups() if match else ("1", "128")
    return f"--batch-size {batch} --passage-tokens {tokens}"


def _measure_run_command(run: RunData, target: RateCapacity | None) -> str:
    """The command that gives a run without a capacity search its capacity, at the others' target."""
    backend = run.info.get("backend") or "self-hosted"
    host = f" --host {run.info['host']}" if run.info.get("host") else ""
    slo = f"{target.target.p95_latency_ms:g}" if target else "P95_MS"
    return (
        f"embed-bench run --backend {backend}{host} --grid capacity --slo-p95-ms {slo} "
        f"{_shape_options(target)} --out runs/{run.directory.name}-capacity"
    )


def _server(run: RunData) -> tuple[object, ...] | None:
    """What identifies the deployment a run measured: backend, host, model and hardware (None when
    run.json names no host: such runs are never taken for one another)."""
    info = run.info
    if not info.get("host"):
        return None
    return (info.get("backend"), info.get("host"), info.get("model"), repr(info.get("hardware")))


def same_server(loaded: Sequence[RunData], rates: Sequence[RateRun | None]) -> dict[str, str]:
    """Runs without a capacity search -> the run with one of the same deployment (:func:`_server`):
    a grid run and a capacity run of one server are one option, not two."""
    searched = {
        _server(run): run.label
        for run, rate in zip(loaded, rates, strict=True)
        if rate is not None and rate.capacity is not None and _server(run) is not None
    }
    return {
        run.label: searched[_server(run)]
        for run, rate in zip(loaded, rates, strict=True)
        if (rate is None or rate.capacity is None) and _server(run) in searched
    }


def _measure_api_command(price: Price, target: RateCapacity | None) -> str:
    """The command that measures a per-token API's capacity (its key from the environment)."""
    backend = price.backend or "openai"
    key = "JINA_API_KEY=... " if backend == "jina" else ""
    host = "" if backend == "jina" else " --host URL --model NAME"
    slo = f"{target.target.p95_latency_ms:g}" if target else "P95_MS"
    return (
        f"{key}embed-bench run --backend {backend}{host} --grid capacity --slo-p95-ms {slo} "
        f"{_shape_options(target)} --pricing {price.name} --out runs/{price.name}-capacity"
    )


def decision_options(
    loaded: Sequence[RunData],
    prices: Sequence[Price | None],
    rates: Sequence[RateRun | None],
    decision_prices: Sequence[Price] = (),
) -> tuple[list[OptionCapacity], list[str]]:
    """The options of the decision table, and the runs left out for want of a price.

    Each run at its own price, its capacity where it has a search, provisioned at the lower bound of
    its interval, and each price checked against the hardware the run measured (run.json). With
    ``decision_prices`` (e.g. a CPU and a GPU instance), each run with a capacity is costed at each
    hourly one instead, and each per-token one is an option of its own, not measured: an API's
    capacity is its provider's, and only a run against it measures it."""
    options, unpriced = [], []
    searched = next((rate.capacity for rate in rates if rate is not None and rate.capacity), None)
    grouped = same_server(loaded, rates)
    for run, price, rate in zip(loaded, prices, rates, strict=True):
        if run.label in grouped:
            continue  # its server's capacity run is the option
        capacity = rate.capacity if rate is not None else None
        run_prices = [p for p in decision_prices if p.total_usd_per_hour is not None] if capacity else []
        if not run_prices:
            if price is None:
                unpriced.append(run.label)
                continue
            run_prices = [price]
        provisioned = _provisioned(capacity) if capacity else (None, None, None)
        for run_price in run_prices:
            options.append(
                OptionCapacity(
                    run.label,
                    run_price,
                    provisioned[0],
                    provisioned[1],
                    hardware_note=hardware_mismatch(run_price, run.info.get("hardware")),
                    capacity_interval_requests_per_s=provisioned[2],
                    measure_command=None if capacity else _measure_run_command(run, searched),
                    point_requests_per_s=capacity.capacity_requests_per_s if capacity else None,
                )
            )
    for price in decision_prices:
        if price.usd_per_million_tokens is not None:
            options.append(
                OptionCapacity(
                    price.description.split(",")[0] or price.name,
                    price,
                    None,
                    None,
                    measure_command=_measure_api_command(price, searched),
                )
            )
    return options, unpriced


def decision_report(
    workload: Workload,
    loaded: Sequence[RunData],
    prices: Sequence[Price | None],
    rates: Sequence[RateRun | None],
    decision_prices: Sequence[Price] = (),
) -> Section:
    """The decision table over the options of :func:`decision_options`, against the runs' target."""
    options, unpriced = decision_options(loaded, prices, rates, decision_prices)
    targets = {
        run.label: rate.capacity.target.describe()
        for run, rate in zip(loaded, rates, strict=True)
        if rate is not None and rate.capacity is not None
    }
    distinct = sorted(set(targets.values()))
    if len(distinct) == 1:
        target = distinct[0]
    elif distinct:
        target = "; ".join(f"{label}: {text}" for label, text in targets.items())
    else:
        target = "none measured (no run holds a capacity search)"
    section = decision_section(decide(workload, options, target))
    grouped: dict[str, list[str]] = {}
    for label, searched_by in same_server(loaded, rates).items():
        grouped.setdefault(searched_by, []).append(label)
    together = tuple(
        f"{', '.join(labels)}: the same deployment as {searched_by} (backend, host, model and hardware), "
        f"whose search measured its capacity: one option"
        for searched_by, labels in grouped.items()
    )
    section = replace(section, bullets=together + section.bullets)
    alerts = tuple(
        f"{label} has no price (run.json pricing or --pricing): not in the table" for label in unpriced
    )
    if len(distinct) > 1:
        alerts += ("the runs' capacities were searched against different targets: compare with care",)
    return replace(section, alerts=section.alerts + alerts)


def billed_per_counted(metrics: RunMetrics) -> float:
    """Tokens the server billed per token the figures count: 1 under the server count or without
    usage; the server/client ratio under the client count."""
    check = metrics.token_check
    if metrics.token_count == SERVER or check is None or not check.tokens_client:
        return 1.0
    return check.ratio


def write_report(report: Report, out: Path) -> list[Path]:
    """Write report.md, report.html, cells.csv, summary.csv and the PNGs into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for plot in report.plots.values():
        (out / plot.filename).write_bytes(plot.png)
        written.append(out / plot.filename)
    (out / "report.md").write_text(
        render_markdown(TITLE, report.intro, report.sections, report.plots), encoding="utf-8"
    )
    (out / "report.html").write_text(
        render_html(TITLE, report.intro, report.sections, report.plots), encoding="utf-8"
    )
    write_cells_csv(out / "cells.csv", report.runs)
    write_summary_csv(out / "summary.csv", report.columns)
    tables = [out / "report.md", out / "report.html", out / "cells.csv", out / "summary.csv"]
    if report.rate_runs:
        write_rate_cells_csv(out / "rate_cells.csv", report.rate_runs)
        tables.append(out / "rate_cells.csv")
    return [*tables, *written]
