"""`embed-bench demo` (and `make demo`) can run again: it replaces its own earlier demo, and only that;
it plans a capacity search after the grid of the modes asked, and its report step opens with the
decision table (checked on fixture runs, without a server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embed_bench.commands.demo import (
    DEMO_MARKER,
    build_parser,
    check_demo_dir,
    parse_modes,
    plan_runs,
    pricing_for,
    replace_demo_dir,
    report_arguments,
)
from embed_bench.commands.run import RunError
from reports.cli import main as report_main
from reports.cost.pricing import hardware_mismatch, load_price_book
from target_server.hardware import describe_hardware
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
    assert none.capacity.locust_args[-12:] == [
        "--slo-p95-ms",
        "250",
        "--batch-size",
        "1",
        "--passage-tokens",
        "16",  # the sample day's typical query
        "--request-rate",
        "8",
        "--cell-duration",
        "10",
        "--confirm-repeats",
        "2",  # the demo's two rounds of confirmation steps, as embed-bench run's default
    ]
    with pytest.raises(RunError, match="--capacity-modes takes"):
        parse_modes("fast", "--capacity-modes", allow_empty=True)
    assert parse_modes("", "--capacity-modes", allow_empty=True) == []


def test_the_demo_report_opens_with_the_decision_table_at_this_machines_price(
    tmp_path: Path, spawn: None
) -> None:
    """The report step of the demo on fixture runs in the demo's layout: a grid run and a capacity
    search (4/s at p95 <= 300 ms, 512 tokens/s) for mode none, measured on this machine's CPUs.
    Sample workload: 1e8 tokens a day (1,157.4 tokens/s: 3 instances), peaks of 40/s:
    ceil(40 / 4) = 10 instances at the pricing file's entry for this machine (c7i.large on 2 cores:
    0.08925 x 730 x 10 = 651.53 USD). The Jina API is not measured: listed, never the answer."""
    args = build_parser().parse_args(
        [
            "--out",
            str(tmp_path),
            "--modes",
            "none",
            "--capacity-modes",
            "none",
            "--workload",
            "tokens-per-day=1e8,peak-requests-per-s=40",  # the hand calculation's (the default: the sample day)
        ]
    )
    args.pricing = pricing_for("cpu")
    price = load_price_book()[args.pricing]
    this_machine = describe_hardware("cpu").as_dict()
    assert hardware_mismatch(price, this_machine) is None, f"{args.pricing} does not fit this machine"
    (mode,) = plan_runs(args, ["none"], ["none"])
    write_record_run(mode.grid.out, [RecordCell(1, 128, 2, requests_per_user=5, median_ms=60)], label="none")
    steps = [
        # 60 s steps: 240 and 480 requests, enough for a p95 whose interval clears the target
        RateRecordCell(rate, 60, (RateShape(1, 128, median),), sigma=0.05)
        for rate, median in ((4, 200), (8, 900))
    ]
    write_rate_run(mode.capacity.out, steps, label="none capacity", slo={"p95_ms": 300, "success_pct": 99.9})
    for run in (mode.grid.out, mode.capacity.out):  # what embed-bench run records from the server's /info
        info = json.loads((run / "run.json").read_text())
        (run / "run.json").write_text(json.dumps(info | {"hardware": this_machine}))
    report_dir = tmp_path / "report"
    assert report_main(report_arguments(args, [mode], report_dir)) == 0
    report = (report_dir / "report.md").read_text()
    header, *rows = markdown_table(report, "Monthly cost at the target")
    costs = {(row[0], row[1]): row[header.index("monthly cost (USD)")] for row in rows}
    monthly = price.total_usd_per_hour * 730 * 10
    assert costs == {("none capacity", args.pricing): f"{monthly:,.2f}"}
    assert f"Cheapest measured option that meets the target: none capacity at {args.pricing}" in report
    # the grid run and the capacity search of one server (the same host in run.json): one option
    assert "none: the same deployment as none capacity" in report and "Not measured: none (" not in report
    assert "Not measured: Jina Embeddings API (jina_api): list price at this workload 60.80 USD" in report
    assert "JINA_API_KEY=... embed-bench run --backend jina --grid capacity --slo-p95-ms 300" in report
    assert report.index("## Decision") < report.index("## Runs") < report.index("## Capacity at the target")
