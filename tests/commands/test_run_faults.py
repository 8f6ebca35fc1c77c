"""Faults an `embed-bench run` survives, through real processes: a Locust worker killed mid-cell, the
target server killed and restarted mid-run, and a run directory that cannot be written. Each test
prints its figures (per-cell counts, what was lost, how long the outage lasted)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from embed_bench.core.checks import CONNECTION_FAILURES
from embed_bench.core.contract import RUN_FILES
from reports.cost.columns import RunColumn
from reports.load.runs import load_run
from reports.metrics.runs import run_metrics
from reports.tables.sections import partial_alerts, unreachable_alerts
from target_server.launcher import free_port, http_status, stop, wait_healthy
from tests.doubles.process import running_double
from tests.load.runs import REPO, locust_env, wait_for, write_grid
from tests.support.recording_server import recording_server

pytestmark = pytest.mark.usefixtures("spawn")

KEY = "jina_double_key"
SERVER = ("--model", "null:8", "--no-warmup")  # the real server, its forward pass instant: quick to start


def embed_bench(*args: str) -> list[str]:
    return [sys.executable, "-m", "embed_bench", *args]


def start(command: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=locust_env(), cwd=REPO
    )


def cells(out: Path) -> list[dict[str, str]]:
    path = out / RUN_FILES.cells_csv
    if not path.exists():
        return []
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append((int(entry.name), command))
    return found


def report_alerts(out: Path) -> list[str]:
    """What the report flags at the top of its summary for this run (the same lines `embed-bench report`
    prints as warnings; tests/reports/test_record_counts.py renders them into report.md and .html)."""
    column = RunColumn(run_metrics(load_run(out)), None)
    return [*partial_alerts([column]), *unreachable_alerts([column])]


def test_a_worker_killed_mid_cell_the_run_goes_on_and_the_cell_says_what_was_lost(tmp_path: Path) -> None:
    grid = write_grid(tmp_path / "grid.toml", [(4, 1, 16), (4, 2, 16), (4, 4, 16)])
    out = tmp_path / "run"
    with running_double("jina_api", "--api-key", KEY, "--latency-ms", "200") as double:
        command = embed_bench(
            *("run", "--backend", "openai", "--host", double.url, "--model", "jina-embeddings-v3"),
            *("--api-key", KEY, "--out", str(out), "--grid", str(grid), "--workers", "2"),
            *("--requests-per-user", "10", "--cell-max-seconds", "60"),
        )
        run = start(command)
        assert wait_for(lambda: len(cells(out)) == 1, timeout_s=90), "the first cell did not start"
        workers = [pid for pid, line in children(run.pid) if "--worker" in line]
        assert len(workers) == 2, children(run.pid)
        time.sleep(0.5)  # mid-cell: each user has about 2 s of requests left
        killed_at = time.time()
        os.kill(workers[0], signal.SIGKILL)
        stdout, stderr = run.communicate(timeout=150)
    print(stdout)
    rows = cells(out)
    first, *rest = rows
    print(
        f"killed at +{killed_at - float(first['start']):.1f} s into the cell; cell ended "
        f"+{float(first['end']) - killed_at:.1f} s after the kill; "
        + "; ".join(
            f"{row['cell']}: {row['completed']}/{row['planned']} ({row['workers_lost'] or 0} lost)"
            for row in rows
        )
    )
    assert run.returncode == 0, stderr
    assert "exited with code -9 during the run; the run goes on with 1 worker(s)" in stdout
    assert first["workers_lost"] == "1"
    assert int(first["completed"]) < int(first["planned"]) == 40  # the dead worker's users' requests
    assert float(first["end"]) - killed_at < 20  # ended when the survivors were done, not at 60 s
    for row in rest:  # the next cells measure again, on the worker left
        assert row["workers_lost"] == "" and row["completed"] == row["succeeded"] == row["planned"] == "40"
    lost = 40 - int(first["completed"])
    assert f"{lost} unsent or unfinished, 1 Locust worker(s) lost mid-cell" in stdout
    info = json.loads((out / RUN_FILES.run_json).read_text())
    assert info["status"] == "partial (1 cell(s) cut short; 1 Locust worker(s) lost)"
    assert info["workers_lost_by_cell"] == {"b=1 t=16 c=4": 1}
    assert "records_lost" not in info  # what the cell counted is on record, row for row
    alerts = report_alerts(out)
    print("report:", alerts)
    flag = f"b=1 t=16 c=4: 1 Locust worker(s) lost mid-cell, {first['completed']}/40 requests completed"
    assert flag in alerts[0], alerts


def start_target(port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as stream:
        return subprocess.Popen(
            [sys.executable, "-m", "target_server", *("--host", "127.0.0.1", "--port", str(port)), *SERVER],
            stdout=stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO,
        )


def test_the_target_killed_and_restarted_mid_run_fails_requests_on_the_connection_then_measures_again(
    tmp_path: Path,
) -> None:
    grid = write_grid(tmp_path / "grid.toml", [(2, 1, 16), (2, 2, 16), (2, 4, 16), (2, 8, 16), (2, 16, 16)])
    out, log = tmp_path / "run", tmp_path / "target.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_target(port, log)
    run: subprocess.Popen[str] | None = None
    try:
        # The run waits for the loading server's /health itself: both start at once.
        assert wait_for(lambda: http_status(f"{url}/health") is not None or server.poll() is not None, 60)
        run = start(
            embed_bench(
                *("run", "--backend", "self-hosted", "--host", url, "--out", str(out), "--grid", str(grid)),
                *("--requests-per-user", "20"),
            )
        )
        assert wait_for(lambda: len(cells(out)) >= 2, timeout_s=90), "the second cell did not start"
        os.killpg(server.pid, signal.SIGKILL)  # no goodbye: in-flight requests lose their connection
        server.wait(timeout=10)
        killed_at = time.time()
        server = start_target(port, log)
        wait_healthy(url, 120, server, log)
        back_at = time.time()
        stdout, stderr = run.communicate(timeout=180)
    finally:
        stop(server)
        if run is not None and run.poll() is None:
            run.kill()
            run.wait()
    print(stdout)
    rows = cells(out)
    print(
        f"target down {back_at - killed_at:.1f} s (killed, restarted, healthy again); "
        + "; ".join(
            f"{row['cell']}: {row['succeeded']}/{row['planned']} ok {row['failures']}" for row in rows
        )
    )
    assert run.returncode == 0, stderr
    failures: dict[str, int] = {}
    for row in rows:
        for part in filter(None, row["failures"].split("; ")):
            kind, _, count = part.rpartition(" (")
            failures[kind] = failures.get(kind, 0) + int(count.rstrip(")"))
    # The kill: requests fail on the connection; the restarted server, loading, answers 503 not_ready.
    assert set(failures) & set(CONNECTION_FAILURES), failures
    assert set(failures) <= {*CONNECTION_FAILURES, "HTTP 503 not_ready"}, failures
    hit = [row for row in rows if row["failures"]]
    last = rows[-1]
    assert len(rows) == 5 and last not in hit  # the grid went on, and the last cell measured again
    assert last["succeeded"] == last["planned"] == "40"
    alerts = report_alerts(out)
    print("report:", alerts)
    assert any(
        "the target was UNREACHABLE for part of the run" in alert and "b=2 t=16 c=2: connection" in alert
        for alert in alerts
    ), alerts


def test_a_run_directory_that_cannot_be_written_stops_the_run_before_anything_is_sent(tmp_path: Path) -> None:
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the runs folder should be")
    with recording_server() as server:
        started = time.monotonic()
        result = subprocess.run(
            embed_bench(
                "run",
                "--backend",
                "openai",
                "--host",
                server.url,
                "--model",
                "m",
                "--out",
                str(blocker / "mine"),
            ),
            capture_output=True,
            text=True,
            timeout=120,
            env=locust_env(),
            cwd=REPO,
        )
        took = time.monotonic() - started
        received = server.received()
    print(
        f"exit {result.returncode} after {took:.1f} s, {len(received)} request(s) sent: {result.stderr.strip()}"
    )
    assert result.returncode == 2
    assert (
        f"error: --out {blocker / 'mine'}: the run directory cannot be created, {blocker} is a file"
        in result.stderr
    )
    assert received == []
    assert blocker.read_text() == "a file where the runs folder should be"
