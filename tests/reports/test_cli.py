"""``embed-bench report`` end to end: files, columns, the study beside the runs, and bad input."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from embed_bench.commands.cli import main as embed_bench_main
from reports.cli import main
from reports.cost.headline import SUMMARY_METRICS
from reports.load.runs import load_run
from reports.metrics.runs import run_metrics
from reports.metrics.study import load_study
from reports.tables.base import MISSING
from tests.reports.fixtures import CellSpec, RunLayout, write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPORT_FILES = ("report.md", "report.html", "cells.csv", "summary.csv")


def markdown_table(report: str, title: str) -> list[list[str]]:
    """Rows (header first) of the Markdown table under the heading ``title`` (## or ###), quoted or not."""
    report = re.sub(r"^> ?", "", report, flags=re.MULTILINE)
    section = re.split(rf"^#{{2,3}} {re.escape(title)}\n", report, maxsplit=1, flags=re.MULTILINE)[1]
    lines = [line for line in section.split("\n\n", 2)[1].splitlines() if line.startswith("|")]
    return [
        [cell.strip() for cell in line.strip("|").split(" | ")]
        for line in lines
        if not line.startswith("|---")
    ]


@pytest.fixture(scope="module")
def study_report(study_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    assert main([*map(str, study_runs.values()), "--out", str(out), "--compare-study"]) == 0
    return out


def test_report_files(study_report: Path) -> None:
    for name in REPORT_FILES:
        assert (study_report / name).stat().st_size > 0
    plots = sorted(study_report.glob("*.png"))
    assert [plot.name for plot in plots] == [
        "cost_per_million_tokens.png",
        "latency_by_cell.png",
        "latency_vs_throughput.png",
        "success_rate.png",
        "token_throughput.png",
    ]  # no records: no throughput-over-time, time split or CDF figure
    markdown = (study_report / "report.md").read_text()
    html = (study_report / "report.html").read_text()
    for plot in plots:
        png = plot.read_bytes()
        assert png.startswith(PNG_MAGIC)
        assert f"]({plot.name})" in markdown
        assert f"data:image/png;base64,{base64.b64encode(png).decode()}" in html


def test_runs_share_rows_and_the_study_has_a_block_of_its_own(
    study_runs: dict[str, Path], study_report: Path
) -> None:
    markdown = (study_report / "report.md").read_text()
    labels = [load_run(path).label for path in study_runs.values()]
    study = [system.label for system in load_study()]
    assert markdown_table(markdown, "Summary")[0] == ["metric", *labels]
    assert markdown_table(markdown, "Success rate (%) by batch size")[0] == ["batch size", *labels]
    assert markdown_table(markdown, "Response time (ms) per cell")[0][3:] == labels
    assert markdown_table(markdown, "Study: Summary")[0] == ["metric", *study]
    differences = markdown_table(markdown, "What differs between these runs and the study")
    assert differences[0] == ["field", *labels, "the study"]
    assert [row[0] for row in differences[1:4]] == ["model", "hardware", "grid"]
    # the block is quoted between rules, right after our summary
    block = markdown.split("## Summary", 1)[1].split("## Success rate", 1)[0]
    assert "---\n\n> ## Reference study: published figures, not measured here" in block
    assert all(
        line.startswith(">")
        for line in block.split("not measured here\n", 1)[1].split("\n---")[0].splitlines()
        if line
    )
    html = (study_report / "report.html").read_text()
    assert '<section class="separate">\n<h2 id="reference-study' in html


def test_study_figures_are_printed_as_published(study_report: Path) -> None:
    rows = {row[0]: row for row in markdown_table((study_report / "report.md").read_text(), "Study: Summary")}
    sagemaker = next(system for system in load_study() if system.key == "sagemaker")
    column = 1 + [system.key for system in load_study()].index("sagemaker")
    assert rows["latency (s)"][column] == f"{sagemaker.summary['latency_s']:.2f}"
    assert rows["best cell token throughput (the study's 'peak', tokens/s)"][column] == "32,200"
    assert "requests measured" not in rows  # figures only runs have: left out, not a row of dashes


def test_csv_exports_hold_the_computed_metrics(study_runs: dict[str, Path], study_report: Path) -> None:
    runs = [run_metrics(load_run(path)) for path in study_runs.values()]
    cells = pd.read_csv(study_report / "cells.csv")
    assert len(cells) == sum(len(run.cells) for run in runs)
    assert {"p95_latency_ms", "throughput_tokens_per_s", "study_request_throughput_rps", "timed_by"} <= set(
        cells
    )
    summary = pd.read_csv(study_report / "summary.csv").set_index("metric")
    assert list(summary.index) == [metric.key for metric in SUMMARY_METRICS]
    for run in runs:
        assert summary.at["latency_s", run.label] == pytest.approx(run.mean_latency_ms / 1000)
        assert summary.at["peak_token_throughput_tokens_per_s", run.label] == pytest.approx(
            run.peak_throughput_tokens_per_s
        )
        assert summary.at["request_success_rate_pct", run.label] == pytest.approx(run.success_rate_pct)


def test_only_failed_cells_have_no_normalized_latency(study_report: Path) -> None:
    rows = markdown_table((study_report / "report.md").read_text(), "Normalized latency (ms) per cell")
    column = rows[0].index("self hosted standard")
    for row in rows[1:]:
        assert (row[column] == MISSING) == (int(row[1]) >= 32), row  # every 32/128-passage request failed


def test_missing_cells_are_dashes(study_runs: dict[str, Path], tmp_path: Path) -> None:
    """The self-hosted table lacks 9 of the 27 cells SageMaker has."""
    assert (
        main([str(study_runs["sagemaker"]), str(study_runs["self_hosted_standard"]), "--out", str(tmp_path)])
        == 0
    )
    rows = markdown_table((tmp_path / "report.md").read_text(), "Response time (ms) per cell")
    assert len(rows) - 1 == 27
    present = {cell.cell for cell in run_metrics(load_run(study_runs["self_hosted_standard"])).cells}
    for concurrency, batch, tokens, _, self_hosted in rows[1:]:
        assert (self_hosted == MISSING) == (f"b={batch} t={tokens} c={concurrency}" not in present)
    assert "study:" not in (tmp_path / "report.md").read_text()


def test_price_per_hour_uses_the_mean_token_throughput(study_runs: dict[str, Path], tmp_path: Path) -> None:
    assert main([str(study_runs["sagemaker"]), "--out", str(tmp_path), "--price-per-hour", "3.908"]) == 0
    summary = pd.read_csv(tmp_path / "summary.csv").set_index("metric").iloc[:, 0]
    tokens_per_s = summary["token_throughput_tokens_per_s"]
    assert summary["price_usd_per_million_tokens"] == pytest.approx(3.908 / (tokens_per_s * 3600 / 1e6))


def test_broken_runs_still_report(tmp_path: Path) -> None:
    """An interrupted run, a plain Locust run without cells.csv or run.json, the old failures layout."""
    cells = [CellSpec(1, 128, 1, 150.0, requests=5), CellSpec(32, 512, 5, 2000.0, requests=25, failures=5)]
    killed = write_run(tmp_path / "killed", cells, label="killed", layout=RunLayout(interrupted=True))
    plain = write_run(
        tmp_path / "plain",
        cells,
        layout=RunLayout(write_cells_csv=False, write_run_json=False, failures_layout="old"),
    )
    out = tmp_path / "out"
    assert main([str(killed), str(plain), "--out", str(out)]) == 0
    markdown = (out / "report.md").read_text()
    notes = markdown.split("## Notes", 1)[1]
    assert "killed: run.json has no ended_at" in notes
    assert "killed: timed by cells.csv start to Locust's last stats write" in notes
    assert "plain: no cells.csv" in notes
    assert "plain: no run.json" in notes
    assert markdown_table(markdown, "Most frequent failures")[1:] == [
        ["plain", "b=32 t=512 c=5", "HTTP 500 CUDA out of memory", "5"]
    ]  # killed's row was cut


def test_repeated_labels_get_their_directory(tmp_path: Path) -> None:
    cells = [CellSpec(1, 128, 1, 150.0, requests=5)]
    first, second = (write_run(tmp_path / name, cells, label="same") for name in ("a", "b"))
    assert main([str(first), str(second), "--out", str(tmp_path / "out")]) == 0
    header = markdown_table((tmp_path / "out" / "report.md").read_text(), "Summary")[0]
    assert header[1:] == [f"same ({first})", f"same ({second})"]


@pytest.fixture
def failed_run(tmp_path: Path) -> Path:
    return write_run(
        tmp_path / "failed", [CellSpec(32, 512, 5, 80.0, requests=25, failures=25)], label="failed"
    )


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["{missing}"], 1, "no such run directory"),
        (["{failed}"], 1, "none of its 25 measured requests succeeded"),
        (["{ok}", "--pricing", "aws_moon_base"], 1, "unknown price 'aws_moon_base'"),
        (
            ["{ok}", "--price-per-hour", "1", "--price-per-million-tokens", "1"],
            2,
            "not allowed with argument",
        ),
        (["{ok}", "--pricing", "jina_api", "--price-per-hour", "1"], 2, "not allowed with argument"),
        (["{ok}", "--price-per-hour", "-3"], 2, "a price must be a positive number"),
        (["{ok}", "--price-per-million-tokens", "cheap"], 2, "'cheap' is not a number"),
    ],
)
def test_bad_input_fails_loudly(
    tmp_path: Path,
    failed_run: Path,
    study_runs: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    code: int,
    message: str,
) -> None:
    paths = {"missing": tmp_path / "missing", "failed": failed_run, "ok": study_runs["sagemaker"]}
    out = tmp_path / "out"
    argv = [arg.format(**paths) for arg in extra] + ["--out", str(out)]
    assert main(argv) == code
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""
    assert not (out / "report.md").exists()


def test_one_run_reports_into_its_own_folder_and_several_need_out(
    capsys: pytest.CaptureFixture[str], study_runs: dict[str, Path], tmp_path: Path
) -> None:
    assert main([str(study_runs["sagemaker"]), str(study_runs["jina_api"])]) == 2
    assert "with several runs, say where the report goes: --out DIR" in capsys.readouterr().err
    run = tmp_path / "sagemaker"
    shutil.copytree(study_runs["sagemaker"], run)
    assert main([str(run)]) == 0
    markdown = (run / "report" / "report.md").read_text()
    # the first section says what can be answered: no cost answer without a workload, then p50/p95 per shape
    first = markdown.index("## ")
    assert markdown[first:].startswith("## What this report answers")
    assert "No cost answer yet: that needs your traffic (--workload" in markdown
    assert markdown.index("### Latency and success per shape") < markdown.index("## Runs")
    assert "price at mean throughput, the study's way (USD per million tokens)" in markdown


def test_embed_bench_report_dispatches_here(
    study_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert embed_bench_main(["report", str(study_runs["jina_api"]), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # The console opens as the report does: what it can answer, then the figures per shape.
    assert out.startswith("## What this report answers\n\nNo cost answer yet: that needs your traffic")
    assert out.index("### Latency and success per shape") < out.index("### Summary")
    assert embed_bench_main(["report", "--help"]) == 0
    assert "usage: embed-bench report" in capsys.readouterr().out


def test_a_capacity_search_that_met_the_target_at_no_rate_says_so_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real search on the 2-core machine (p95 <= 300 ms, every rate missed): the console's first
    lines say no rate met the target, never "capacity 0 requests/s", which reads as a measured zero."""
    run = Path(__file__).resolve().parents[2] / "benchmarks/results/cpu2-2026-12-05/telemetry-capacity"
    assert main([str(run), "--out", str(tmp_path / "report")]) == 0
    head = " ".join(capsys.readouterr().out.split("### ", 1)[0].split())  # as wrapped for a terminal
    assert "continuous, CPU, 1 torch thread: no rate tried met p95 <= 300 ms and success >= 99.9%" in head
    assert "95% interval 0 to 2 requests/s" in head and "capacity 0 requests/s" not in head


def test_python_dash_m_reports(study_runs: dict[str, Path], tmp_path: Path, spawn: None) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "reports", str(study_runs["jina_api"]), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report.html").exists()
    failed = subprocess.run(
        [sys.executable, "-m", "reports", str(tmp_path / "nope"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert failed.returncode == 1
    assert re.match(r"python -m reports: error: .*nope: no such run directory", failed.stderr)
