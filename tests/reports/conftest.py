"""Run directories shared by the report tests, written once per session by ``fixtures``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reports.fixtures import STUDY_LATENCY, study_cells, write_run

# The price each of the study's systems was quoted at (names in reports/data/pricing.toml).
STUDY_PRICING = {
    "jina_api": "jina_api",
    "sagemaker": "sagemaker_us_east_1",
    "self_hosted_standard": "self_hosted_us_east_1",
    "self_hosted_dynamic_batching": "self_hosted_us_east_1",
}


@pytest.fixture(scope="session")
def study_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One run directory per latency table of the study, 5 x concurrency requests per cell."""
    root = tmp_path_factory.mktemp("study_runs")
    return {
        system: write_run(
            root / system, study_cells(system), label=system.replace("_", " "), pricing=STUDY_PRICING[system]
        )
        for system in STUDY_LATENCY
    }
