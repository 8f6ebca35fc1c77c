"""The study's figures kept in the package: faithful copies, read into the right systems."""

from __future__ import annotations

import filecmp
from importlib import resources
from pathlib import Path

import pytest

from embed_bench.core.contract import Cell
from reports.metrics.study import high_load_cells, load_study, study_table
from tests.reports.fixtures import STUDY_LATENCY, study_rows

ARTICLE = Path(__file__).resolve().parents[3] / "shared" / "article"
DATA = Path(str(resources.files("reports") / "data"))


@pytest.mark.skipif(not ARTICLE.is_dir(), reason=f"{ARTICLE} (the project's shared notes) is not present")
def test_package_copies_match_the_article_csvs() -> None:
    sources = sorted(ARTICLE.glob("*.csv"))
    assert sources
    for source in sources:
        assert filecmp.cmp(source, DATA / f"study_{source.name}", shallow=False), source.name


def test_systems_and_their_cells() -> None:
    systems = {system.key: system for system in load_study()}
    assert set(systems) == set(STUDY_LATENCY)
    for key, system in systems.items():
        assert len(system.latency_ms) == len(study_rows(key))
        assert set(system.latency_ms) == set(system.request_throughput_rps)
        assert set(system.high_load_throughput_tokens_per_s) == set(high_load_cells())
        assert set(system.summary) == {row["metric"] for row in study_table("summary.csv")}
    assert high_load_cells() == (
        Cell(concurrency=10, batch_size=32, passage_tokens=512),
        Cell(concurrency=10, batch_size=128, passage_tokens=128),
    )
    assert systems["sagemaker"].latency_ms[Cell(concurrency=10, batch_size=128, passage_tokens=1024)] == 25989
    assert (
        systems["self_hosted_standard"].latency_ms[Cell(concurrency=1, batch_size=1, passage_tokens=128)]
        == 416
    )
    assert (
        systems["self_hosted_dynamic_batching"].latency_ms[
            Cell(concurrency=1, batch_size=1, passage_tokens=128)
        ]
        == 2389
    )
    assert systems["jina_api"].success_rate_by_passage_tokens_pct[8192] == 51.1
