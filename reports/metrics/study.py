"""The reference study's published figures, kept in the package for ``--compare-study``.

``reports/data/study_*.csv`` are copies of the study's tables (``shared/article/`` in the project's
design notes): one headline table, success rate split by one dimension, per-cell response time and
request throughput, token throughput at high load, and cost. They are shown as extra columns
labelled ``study: ...`` beside the runs; nothing is recomputed from them.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources

from embed_bench.core.contract import Cell

# (key used in the study's files, column title, per-cell latency file, column prefix in that file)
_SYSTEMS = (
    ("jina_api", "study: Jina API", "latency_jina_api.csv", ""),
    ("sagemaker", "study: SageMaker", "latency_sagemaker.csv", ""),
    (
        "self_hosted_dynamic_batching",
        "study: self-hosted, dynamic batching",
        "latency_self_hosted.csv",
        "dynamic_batching_",
    ),
    ("self_hosted_standard", "study: self-hosted, standard", "latency_self_hosted.csv", "standard_"),
)


@dataclass(frozen=True)
class StudySystem:
    """One of the study's four deployments, as its tables print it."""

    key: str
    label: str
    summary: dict[str, float]
    success_rate_by_batch_size_pct: dict[int, float]
    success_rate_by_concurrency_pct: dict[int, float]
    success_rate_by_passage_tokens_pct: dict[int, float]
    latency_ms: dict[Cell, float]
    request_throughput_rps: dict[Cell, float]
    high_load_throughput_tokens_per_s: dict[Cell, float]


def study_table(name: str) -> list[dict[str, str]]:
    """Rows of ``reports/data/study_<name>`` as dicts of strings."""
    text = (resources.files("reports") / "data" / f"study_{name}").read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _cell(row: dict[str, str]) -> Cell:
    return Cell(
        concurrency=int(row["concurrency"]),
        batch_size=int(row["batch_size"]),
        passage_tokens=int(row["passage_tokens"]),
    )


def _by_dimension(name: str, dimension: str, key: str) -> dict[int, float]:
    return {int(row[dimension]): float(row[f"{key}_pct"]) for row in study_table(name)}


def _system(key: str, label: str, latency_file: str, prefix: str) -> StudySystem:
    latency = study_table(latency_file)
    return StudySystem(
        key=key,
        label=label,
        summary={row["metric"]: float(row[key]) for row in study_table("summary.csv")},
        success_rate_by_batch_size_pct=_by_dimension("success_by_batch_size.csv", "batch_size", key),
        success_rate_by_concurrency_pct=_by_dimension("success_by_concurrency.csv", "concurrency", key),
        success_rate_by_passage_tokens_pct=_by_dimension(
            "success_by_passage_length.csv", "passage_tokens", key
        ),
        latency_ms={_cell(row): float(row[f"{prefix}response_time_ms"]) for row in latency},
        request_throughput_rps={_cell(row): float(row[f"{prefix}request_throughput_rps"]) for row in latency},
        high_load_throughput_tokens_per_s={
            _cell(row): float(row[f"{key}_tokens_per_s"])
            for row in study_table("token_throughput_high_load.csv")
        },
    )


@cache
def load_study() -> tuple[StudySystem, ...]:
    """The four systems in the order of the study's headline table."""
    return tuple(_system(*system) for system in _SYSTEMS)


def high_load_cells() -> tuple[Cell, ...]:
    """The cells of the study's high-load table, the comparison point for any run."""
    return tuple(sorted(_cell(row) for row in study_table("token_throughput_high_load.csv")))
