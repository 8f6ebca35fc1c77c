"""`embed-bench demo` (and `make demo`) can run again: it replaces its own earlier demo, and only that;
it plans a capacity search after the grid of the modes asked, and its report step opens with the
decision table (checked on fixture runs, without a server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from embed_bench.commands.demo import (
    DEMO_MARKER,
    build_parser,
    check_demo_dir,
    parse_modes,
    plan_runs,
    replace_demo_dir,
    report_arguments,
)
from embed_bench.commands.run import RunError
from reports.cli import main as report_main
from tests.reports.record_fixtures import (
    RateRecordCell,
    RateShape,
    RecordCell,
    write_rate_run,
    write_record_run,
)
from tests.reports.test_cli import markdown_table


def test_a_demo_replaces_the_previous_demo(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    replace_demo_dir(out)  # the first demo
    (out / "continuous").mkdir()
    (out / "continuous" / "run.json").write_text("{}")  # what the first demo left
    check_demo_dir(out, force=False)  # the second demo may go ahead
    replace_demo_dir(out)
    assert sorted(path.name for path in out.iterdir()) == [DEMO_MARKER]


def test_an_absent_or_empty_directory_is_fine(tmp_path: Path) -> None:
    check_demo_dir(tmp_path / "absent", force=False)
    (tmp_path / "empty").mkdir()
    check_demo_dir(tmp_path / "empty", force=False)


def test_a_directory_of_other_files_is_refused_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "runs.csv").write_text("mine")
    with pytest.raises(RunError, match="holds files that are not an earlier demo"):
        check_demo_dir(tmp_path, force=False)
    check_demo_dir(tmp_path, force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="is a file"):
        check_demo_dir(tmp_path / "file", force=True)


def test_the_demo_plans_a_capacity_search_after_the_grid_of_the_modes_asked(
    tmp_path: Path, spawn: None
) -> None:
    args = build_parser().parse_args(
        ["--out", str(tmp_path), "--capacity-modes", "none", "--slo-p95-ms", "250"]
    )
    continuous, timeout, none = plan_runs(args, parse_modes(args.modes), ["none"])
    assert continuous.capacity is None and timeout.capacity is None and none.capacity is not None
    assert none.capacity.out == tmp_path / "capacity-none" and none.capacity.grid_spec == "capacity"
    assert none.capacity.locust_args[-10:] == [
        "--slo-p95-ms",
        "250",
        "--batch-size",
        "1",
        "--passage-tokens",
        "128",
        "--request-rate",
        "4",
        "--cell-duration",
        "6",
    ]
    with pytest.raises(RunError, match="--capacity-modes takes"):
        parse_modes("fast", "--capacity-modes", allow_empty=True)
    assert parse_modes("", "--capacity-modes", allow_empty=True) == []


def test_the_demo_report_opens_with_the_decision_table_at_the_study_prices(
    tmp_path: Path, spawn: None
) -> None:
    """The report step of the demo on fixture runs in the demo's layout: a grid run and a capacity
    search (4/s at p95 <= 300 ms, 512 tokens/s) for mode none. Sample workload: 1e8 tokens a day
    (1,157.4 tokens/s: 3 instances), peaks of 40/s: ceil(40 / 4) = 10 instances; 3.288 x 730 x 10 =
    24,002.40 USD self-hosted, 3.908 x 730 x 10 = 28,528.40 USD SageMaker; Jina 1e8 x 30.4 / 1e6 x 0.02
    = 60.80 USD."""
    args = build_parser().parse_args(["--out", str(tmp_path), "--modes", "none", "--capacity-modes", "none"])
    (mode,) = plan_runs(args, ["none"], ["none"])
    write_record_run(mode.grid.out, [RecordCell(1, 128, 2, requests_per_user=5, median_ms=60)], label="none")
    steps = [
        RateRecordCell(rate, 10, (RateShape(1, 128, median),), sigma=0.05)
        for rate, median in ((4, 200), (8, 900))
    ]
    write_rate_run(mode.capacity.out, steps, label="none capacity", slo={"p95_ms": 300, "success_pct": 99.9})
    report_dir = tmp_path / "report"
    assert report_main(report_arguments(args, [mode], report_dir)) == 0
    report = (report_dir / "report.md").read_text()
    header, *rows = markdown_table(report, "Monthly cost at the target")
    costs = {(row[0], row[1]): row[header.index("monthly cost (USD)")] for row in rows}
    assert costs == {
        ("none", "self_hosted_us_east_1"): "—",  # the grid run: no capacity measured
        ("none capacity", "sagemaker_us_east_1"): "28,528.40",
        ("none capacity", "self_hosted_us_east_1"): "24,002.40",
        ("per-token API", "jina_api"): "60.80",
    }
    assert report.index("## Decision") < report.index("## Runs") < report.index("## Capacity at the target")
