"""The reference study's published figures (``--compare-study``), as a block of their own.

The study measured another model on other hardware over another grid, so its figures never share
rows with the runs': they are shown in a framed section that first states, run by run, what
differs, then prints the study's tables as published."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from reports.cost.columns import RunColumn
from reports.metrics.study import StudySystem, high_load_cells, study_table
from reports.tables.base import MISSING, Section, Table, header, success_tables, summary_table
from reports.tables.cells import CELL_FIGURES, cell_table

STUDY_TITLE = "Reference study: published figures, not measured here"
STUDY = {
    "model": "jinaai/jina-embeddings-v3 (570M parameters, 1,024 dimensions)",
    "hardware": "Jina API: Jina's hosted service; SageMaker: ml.g5.xlarge (NVIDIA A10G, 24 GB); "
    "self-hosted: g5.xlarge (NVIDIA A10G, 24 GB) on EKS",
    "requests per user": "5 (every cell run five times)",
    "tokens counted": "not stated",
}


def _study_cells() -> set[str]:
    return {
        f"b={row['batch_size']} t={row['passage_tokens']} c={row['concurrency']}"
        for row in study_table("latency_sagemaker.csv")
    }


def _grid(run: RunColumn) -> str:
    grid = run.metrics.info.get("grid") or "grid not recorded"
    return f"{grid}: {len(run.metrics.cells)} cell(s) measured"


def _hardware(run: RunColumn) -> str:
    info = run.metrics.info
    return str(
        info.get("hardware") or info.get("device") or f"not recorded (host {info.get('host') or MISSING})"
    )


def _requests_per_user(run: RunColumn) -> str:
    arguments = run.metrics.info.get("locust_args") or []
    if "--requests-per-user" in arguments[:-1]:
        return arguments[arguments.index("--requests-per-user") + 1]
    return "not recorded (default 5)" if arguments else MISSING


def differences_table(runs: Sequence[RunColumn]) -> Table:
    common = _study_cells()
    rows = (
        ("model", *(str(run.metrics.info.get("model") or MISSING) for run in runs), STUDY["model"]),
        ("hardware", *(_hardware(run) for run in runs), STUDY["hardware"]),
        (
            "grid",
            *(_grid(run) for run in runs),
            f"article: {len(common)} cells (concurrency 1, 5, 10 x batch 1, "
            "32, 128 x 128, 512, 1,024 tokens)",
        ),
        (
            "cells in common with the study",
            *(str(sum(cell.cell in common for cell in run.metrics.cells)) for run in runs),
            "—",
        ),
        (
            "requests per user per cell",
            *(_requests_per_user(run) for run in runs),
            STUDY["requests per user"],
        ),
        ("tokens counted", *(run.metrics.token_count for run in runs), STUDY["tokens counted"]),
    )
    return Table(
        "study_differences",
        "What differs between these runs and the study",
        "read the study's figures with these differences in mind; nothing below is recomputed",
        (*header(["field"], runs), "the study"),
        rows,
    )


def _printed_rows(table: Table) -> Table:
    """The rows the study printed (a figure only runs have is left out, not shown as dashes)."""
    return replace(table, rows=tuple(row for row in table.rows if any(value != MISSING for value in row[1:])))


def study_section(runs: Sequence[RunColumn], study: Sequence[StudySystem]) -> Section:
    columns = list(study)
    return Section(
        STUDY_TITLE,
        text="The reference study's own tables (January 2025), printed as published beside nothing of "
        "ours: its figures come from another model, other hardware and another grid.",
        tables=(
            differences_table(runs),
            *(
                replace(table, key=f"study_{table.key}", title=f"Study: {table.title}")
                for table in (
                    _printed_rows(summary_table(columns)),
                    *success_tables(columns),
                    cell_table(CELL_FIGURES["latency_ms"], columns),
                    cell_table(CELL_FIGURES["request_throughput_rps"], columns),
                    cell_table(CELL_FIGURES["high_load"], columns, high_load_cells()),
                )
            ),
        ),
        separate=True,
    )
