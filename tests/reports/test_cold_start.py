"""The cold-start check: a cell whose first tenth of requests (by send time) took a median more
than 4x its last tenth's is flagged on the report's first screen and in its own section; a warm one
is not, and a cell too small or of several shapes is listed as not checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reports.cli import main
from reports.load.runs import load_run
from reports.metrics.cold_start import (
    COLD_START_RATIO,
    MIN_REQUESTS,
    SEVERAL_SHAPES,
    TOO_FEW,
    check_walk,
    run_warmth,
)
from reports.tables.cold_start import COLD_START_TITLE
from tests.reports.record_fixtures import RecordCell, write_gzip_members, write_record_run

CELL = RecordCell(
    batch_size=1, passage_tokens=16, concurrency=4, requests_per_user=10, median_ms=50, sigma=0.1
)
SMALL = RecordCell(
    batch_size=2, passage_tokens=16, concurrency=1, requests_per_user=5, median_ms=60, sigma=0.1
)


def walk(latencies_ms: list[float], sent_at: list[float] | None = None, shapes: int = 1) -> pd.DataFrame:
    """Typed record rows of one walk, as the report loads them."""
    count = len(latencies_ms)
    sent = sent_at if sent_at is not None else [float(i) for i in range(count)]
    return pd.DataFrame(
        {
            "latency_ms": latencies_ms,
            "sent_at": sent,
            "planned_at": sent,
            "batch_size": [1 + (i % shapes) for i in range(count)],
            "passage_tokens": [16] * count,
        }
    )


def test_the_first_tenths_median_against_the_lasts_flags_above_the_threshold() -> None:
    # 40 requests: tenths of 4. First tenth median 4.1 x 100 ms, last 100 ms: flagged at 4.1x.
    cold = check_walk("c", walk([410.0] * 4 + [150.0] * 32 + [100.0] * 4))
    assert not isinstance(cold, str)
    assert (cold.requests, cold.tenth, cold.first_median_ms, cold.last_median_ms) == (40, 4, 410.0, 100.0)
    assert cold.ratio == pytest.approx(4.1) and cold.cold
    # 3.9x: within what warm servers showed, not flagged.
    warm = check_walk("c", walk([390.0] * 4 + [150.0] * 32 + [100.0] * 4))
    assert not isinstance(warm, str) and not warm.cold and COLD_START_RATIO == 4.0
    # A slower end (a queue building in an overloaded rate cell) is not a cold start.
    late = check_walk("c", walk([100.0] * 4 + [150.0] * 32 + [1000.0] * 4))
    assert not isinstance(late, str) and not late.cold


def test_the_tenths_go_by_send_time_not_by_row_order() -> None:
    latencies = [100.0] * 36 + [500.0] * 4  # the slow ones written last...
    sent = [float(i + 10) for i in range(36)] + [1.0, 2.0, 3.0, 4.0]  # ...but sent first
    check = check_walk("c", walk(latencies, sent))
    assert not isinstance(check, str) and check.first_median_ms == 500.0 and check.cold


def test_too_few_requests_or_several_shapes_are_not_checked() -> None:
    assert check_walk("c", walk([100.0] * (MIN_REQUESTS - 1))) == TOO_FEW
    assert check_walk("c", walk([500.0] * 4 + [100.0] * 36, shapes=2)) == SEVERAL_SHAPES


def make_cold(directory: Path, frame: pd.DataFrame, cell: str, factor: float) -> None:
    """The first tenth (by send time) of the cell's successful measured requests made ``factor``
    times slower, as a server still warming up answers them; the record file rewritten."""
    frame = frame.copy()
    rows = frame[(frame["cell"] == cell) & (frame["warmup"] == 0) & (frame["ok"] == 1)]
    first = rows.assign(sent=rows["sent_at"].astype(float)).sort_values("sent").index[: len(rows) // 10]
    latency = frame.loc[first, "latency_ms"].astype(float) * factor
    frame.loc[first, "latency_ms"] = [f"{value:.3f}" for value in latency]
    frame.loc[first, "completed_at"] = [
        f"{float(sent) + value / 1000:.6f}"
        for sent, value in zip(frame.loc[first, "sent_at"], latency, strict=True)
    ]
    write_gzip_members(directory / "requests.csv.gz", frame)


def report_text(directory: Path, out: Path) -> tuple[str, str]:
    assert main([str(directory), "--out", str(out)]) == 0
    return (out / "report.md").read_text(), (out / "report.html").read_text()


def test_a_cold_cell_is_flagged_on_the_first_screen_and_a_warm_run_is_not(tmp_path: Path) -> None:
    frame = write_record_run(tmp_path / "cold", [SMALL, CELL], label="cold")
    make_cold(tmp_path / "cold", frame, CELL.name, 10.0)
    write_record_run(tmp_path / "warm", [SMALL, CELL], label="warm")

    cold = run_warmth(load_run(tmp_path / "cold"))
    assert cold is not None and [check.cell for check in cold.flagged] == [CELL.name]
    assert cold.flagged[0].ratio == pytest.approx(10.0, rel=0.35)  # medians of 4 log-normal draws each
    assert cold.not_checked == ((SMALL.name, TOO_FEW),)

    markdown, html = report_text(tmp_path / "cold", tmp_path / "cold-report")
    first_screen = markdown.split("\n## ")[1]  # the section the report opens with
    assert (
        f"COLD START? cold, {CELL.name}: the first tenth of its successful requests took a median"
        in first_screen
    )
    assert f"## {COLD_START_TITLE}" in markdown
    section = markdown.split(f"## {COLD_START_TITLE}")[1]
    row = next(line for line in section.splitlines() if line.startswith(f"| cold | {CELL.name} |"))
    assert row.split("|")[3].strip() == "40"  # successful requests checked
    assert (
        "cold: 1 walk(s) checked, 1 flagged; not checked: 1 with fewer than 30 successful requests" in section
    )
    assert "COLD START? cold" in html and COLD_START_TITLE in html

    warm = run_warmth(load_run(tmp_path / "warm"))
    assert warm is not None and warm.flagged == () and len(warm.checked) == 1
    assert warm.checked[0].ratio < 1.5
    markdown, html = report_text(tmp_path / "warm", tmp_path / "warm-report")
    assert "COLD START?" not in markdown and "COLD START?" not in html
    assert "No cell's first requests were more than 4x slower than its last ones." in markdown


def test_a_run_without_records_has_no_check(tmp_path: Path) -> None:
    write_record_run(tmp_path / "plain", [CELL], with_records=False)
    assert run_warmth(load_run(tmp_path / "plain")) is None
    markdown, _ = report_text(tmp_path / "plain", tmp_path / "out")
    assert f"## {COLD_START_TITLE}" not in markdown


def test_medians_not_means_a_single_outlier_does_not_flag(tmp_path: Path) -> None:
    latencies = [100.0] * 40
    latencies[0] = 100_000.0  # one request of the first tenth stalled: the tenth's median is 100 ms
    check = check_walk("c", walk(latencies))
    assert not isinstance(check, str) and check.first_median_ms == 100.0 and not check.cold
    assert np.median(latencies[:4]) == 100.0
