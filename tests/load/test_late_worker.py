"""A worker that connects in the middle of a cell (docker compose --scale, a restarted pod) gets the
cell prepared too, so users Locust rebalances onto it run their share instead of stalling the cell."""

from __future__ import annotations

import contextlib
import csv
import subprocess
from pathlib import Path

import pytest

from tests.doubles.process import running_double
from tests.load.runs import free_port, locust_command, locust_env, wait_for, write_grid

pytestmark = pytest.mark.usefixtures("spawn")

KEY = "jina_late_worker_key"
CELL_MAX_S = 90


def test_a_worker_joining_mid_cell_takes_rebalanced_users(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    port = str(free_port())
    with running_double("jina_api", "--api-key", KEY, "--latency-ms", "20") as double:
        common = ("-H", double.url, "--api-key", KEY, "--model", "jina-embeddings-v3")
        master = subprocess.Popen(
            locust_command(
                "jina_api.py",
                "--headless",
                "--only-summary",
                "--csv",
                str(run_dir / "locust"),
                "--master",
                "--expect-workers",
                "1",
                "--master-bind-host",
                "127.0.0.1",
                "--master-bind-port",
                port,
                "--enable-rebalancing",
                *common,
                "--grid",
                str(write_grid(tmp_path / "grid.toml", [(4, 1, 16)])),
                "--requests-per-user",
                "150",
                "--cell-max-seconds",
                str(CELL_MAX_S),
            ),
            env=locust_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        worker_command = locust_command(
            "jina_api.py", "--worker", "--master-host", "127.0.0.1", "--master-port", port
        )
        logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
        files = contextlib.ExitStack()
        streams = [files.enter_context(open(log, "w")) for log in logs]  # noqa: SIM115 - ExitStack closes them
        workers = [
            subprocess.Popen(worker_command, env=locust_env(), stdout=subprocess.DEVNULL, stderr=streams[0])
        ]
        try:
            cells = run_dir / "cells.csv"
            assert wait_for(lambda: cells.exists() and len(cells.read_text().splitlines()) == 2, 60)
            workers.append(
                subprocess.Popen(
                    worker_command, env=locust_env(), stdout=subprocess.DEVNULL, stderr=streams[1]
                )
            )
            _, stderr = master.communicate(timeout=CELL_MAX_S + 60)
        finally:
            for process in [master, *workers]:
                if process.poll() is None:
                    process.kill()
                process.wait()
            files.close()
    late_log = logs[1].read_text()
    assert "prepared cell b=1 t=16 c=4" in late_log, late_log[-2000:]
    assert "no prepared cell" not in late_log + logs[0].read_text() + stderr
    with cells.open(newline="") as stream:
        (row,) = csv.DictReader(stream)
    # The moved users finished their shares: the cell ended by itself, not at --cell-max-seconds,
    # and no planned request went unsent (a moved user starts a fresh share, so more may be sent).
    assert row["end"] and float(row["end"]) - float(row["start"]) < CELL_MAX_S - 30, cells.read_text()
    assert int(row["completed"]) >= int(row["planned"]) == 600
    assert "joined; preparing the cell there too" in stderr
