"""Run directories in, report files out: load -> metrics -> tables and plots -> exporters.

Everything that can reject the input (missing directory, unknown price, a run without any
successful request) happens in ``build_report``, before ``write_report`` creates a single file, so a
failed command never leaves a half-written or misleading report behind.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from reports.columns import Column, RunColumn
from reports.export_csv import write_cells_csv, write_summary_csv
from reports.export_html import render_html
from reports.export_md import render_markdown
from reports.load import RunData, load_run
from reports.metrics import RunMetrics, run_metrics
from reports.plots import Plot, build_plots
from reports.pricing import choose_prices, run_cost
from reports.record_plots import build_record_plots
from reports.sections import build_sections
from reports.study import load_study
from reports.tables import Section
from reports.token_counts import CLIENT, SERVER

TITLE = "embed-bench report"


@dataclass(frozen=True)
class Report:
    intro: str
    runs: tuple[RunColumn, ...]
    columns: tuple[Column, ...]
    sections: tuple[Section, ...]
    plots: dict[str, Plot]


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
) -> Report:
    """Everything the exporters need; raises ReportError on input that cannot be reported honestly.

    Throughput, peak and every comparison use ``count_tokens`` (client by default); a per-token
    price is charged on what the server billed (its usage, where it reports one)."""
    loaded = unique_labels([load_run(directory) for directory in run_dirs])
    prices = choose_prices(
        [run.info.get("pricing") for run in loaded], pricing, usd_per_hour, usd_per_million_tokens
    )
    runs = []
    for run, price in zip(loaded, prices, strict=True):
        metrics = run_metrics(run, count_tokens)
        peak = metrics.peak_or_best_cell_tokens_per_s
        billed = billed_per_counted(metrics)
        cost = run_cost(price, metrics.mean_throughput_tokens_per_s, peak, billed) if price else None
        runs.append(RunColumn(metrics, cost))
    study = load_study() if compare_study else ()
    columns = (*runs, *study)
    plots = {plot.key: plot for plot in [*build_plots(runs).values(), *build_record_plots(runs)]}
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    intro = (
        f"{len(runs)} run(s) side by side: "
        + ", ".join(f"{run.label} ({run.metrics.directory})" for run in runs)
        + f". Generated {generated}."
    )
    if study:
        intro += " The reference study's published figures (January 2025) follow the summary, in a block of their own."
    return Report(intro, tuple(runs), columns, build_sections(runs, study), plots)


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
    return [out / "report.md", out / "report.html", out / "cells.csv", out / "summary.csv", *written]
