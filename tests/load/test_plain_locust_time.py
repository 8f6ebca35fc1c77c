"""Plain Locust without a grid honours -u, -r and -t: a real ``locust --headless -t`` against the real
bundled server sends continuously for -t, and Locust's own --html report covers that time."""

from __future__ import annotations

import json
import re

import pytest

from tests.load.runs import assert_records_match_stats, run_headless

pytestmark = [pytest.mark.usefixtures("spawn"), pytest.mark.serial]

RUN_TIME_S = 8


def test_without_a_grid_run_time_is_the_cells_duration_and_users_send_until_it_ends(tmp_path) -> None:
    from tests.support.target import running_target_server

    html = tmp_path / "locust.html"
    with running_target_server("--batching", "continuous") as url:
        run = run_headless(
            "self_hosted.py",
            tmp_path,
            *("-u", "2", "-r", "2", "-t", f"{RUN_TIME_S}s", "--batch-size", "2", "--passage-tokens", "16"),
            *("-H", url, "--html", str(html), "--requests-per-user", "3"),
        )
    assert run.returncode == 0, run.describe()
    # Said at start: the cell's duration, and what Locust's size column holds.
    assert f"runs for {RUN_TIME_S} s" in run.stderr and "holds tokens per request" in run.stderr
    assert (
        "then measured ones until -t ends" in run.stderr and "measured request(s) per user" not in run.stderr
    )
    (cell,) = run.cells()
    duration = float(cell["end"]) - float(cell["start"])
    assert RUN_TIME_S - 0.5 <= duration <= RUN_TIME_S + 5, duration  # the last requests finish
    # Far more than --requests-per-user each: every user kept sending, and every request counted.
    assert int(cell["planned"]) == int(cell["completed"]) == int(cell["succeeded"]) > 2 * 3 * 2
    assert_records_match_stats(run)
    records = run.records()
    measured = records[records["warmup"] == 0]
    assert measured["user"].nunique() == 2
    span = measured["completed_at"].max() - records["sent_at"].min()
    assert span >= RUN_TIME_S - 1, span
    for _, rows in measured.groupby("user"):  # no user stopped early: each sent until the end
        assert rows["completed_at"].max() >= float(cell["start"]) + RUN_TIME_S - 1
    assert not measured.duplicated(["user", "index"]).any()
    # Locust's own HTML report covers the whole run, not a few seconds.
    page = html.read_text()
    found = re.search(r'"duration":\s*("[^"]*")', page)
    assert found is not None, page[:500]
    seconds = _seconds(json.loads(found.group(1)))
    assert seconds >= RUN_TIME_S - 1, found.group(1)


def _seconds(text: str) -> float:
    """Locust's format_duration text ('8 seconds', '1 minute, 2 seconds') in seconds."""
    units = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)\s+(second|minute|hour|day)", text))
