"""A real swarm on 127.0.0.1: the compose file's master and 2 workers, as separate processes, against
the real bundled server over a 2-cell grid.

The processes run what the containers run -- docker/locust_entrypoint.py with the compose
``command`` and the env files and ``environment`` of docker-compose.yml -- with only what a host
without Docker must change: the master's ``runs`` volume becomes a temporary directory, service names
become 127.0.0.1 addresses (appended flags override the compose ports; argparse keeps the last), and
a user's settings (the grid, requests per user, an unattended ``LOCUST_AUTOQUIT``) are set as
swarm.env would set them. A test-only plugin records what each worker sent.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from embed_bench.core.backends import BACKENDS
from target_server.launcher import free_port, running_target_server
from tests.deploy.files import (
    REPO,
    as_list,
    compose,
    dockerfile,
    env_file_entries,
    read_env_file,
    service_environment,
    url_host,
)
from tests.deploy.programs import invocation

pytestmark = pytest.mark.usefixtures("spawn")

RUN_NAME = "swarm-test"
REQUESTS_PER_USER = 3
WARMUP_REQUESTS = 1  # Locust option default, per user and cell
CELLS = ("b=1 t=16 c=2", "b=4 t=16 c=2")
TINY_GRID = "[[cells]]\nconcurrency = 2\nbatch_size = [1, 4]\npassage_tokens = 16\n"
PLUGIN = REPO / "tests" / "deploy" / "count_plugin.py"
ENTRYPOINT = REPO / "docker" / "locust_entrypoint.py"
KEPT_ENV = ("PATH", "HOME", "LANG", "TMPDIR")


def process_env(
    service: dict[str, Any], addresses: dict[str, str], overrides: dict[str, str]
) -> dict[str, str]:
    """The container's environment (env files in order, then ``environment``) on this host: URLs of
    compose services point at their local addresses; nothing leaks in from the test's own shell."""
    env = {name: os.environ[name] for name in KEPT_ENV if name in os.environ} | {"HF_HUB_OFFLINE": "1"}
    for path, _required in env_file_entries(service):
        if path.exists():
            env |= read_env_file(path)
    for name, value in service_environment(service).items():
        host = url_host(value)
        env[name] = addresses.get(host, value) if host else value
    return env | overrides


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as stream:
        return subprocess.Popen(
            [sys.executable, str(ENTRYPOINT), *args],
            cwd=log.parent,  # each process in its own directory: a stray file would show up there
            env=env,
            stdout=stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def embed_requests_ok(url: str) -> int:
    """The server's own count of answered POST /embed with status 200."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    match = re.search(r'^embed_requests_total\{endpoint="embed",status="200"\} (\S+)$', text, re.MULTILINE)
    return int(float(match.group(1))) if match else 0


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_compose_swarm_counts_every_request_once(tmp_path: Path) -> None:
    document = compose({"WORKERS": "2", "RUN_NAME": RUN_NAME})
    master, worker = document["services"]["master"], document["services"]["worker"]
    assert "volumes" not in worker  # the run directory can only be the master's
    (volume,) = master["volumes"]
    mount = volume.split(":")[1]
    runs = tmp_path / "runs"  # the master's `runs` volume
    grid = tmp_path / "tiny.toml"
    grid.write_text(TINY_GRID)
    counts = tmp_path / "counts"
    master_port, web_port = free_port(), free_port()
    settings = {  # what a user's swarm.env would say, plus the test-only counting plugin
        "LOCUST_GRID": str(grid),
        "LOCUST_REQUESTS_PER_USER": str(REQUESTS_PER_USER),
        "LOCUST_AUTOQUIT": "1",
        "LOCUST_LOCUSTFILE": f"{BACKENDS['self-hosted'].locustfile},{PLUGIN}",
        "EMBED_BENCH_TEST_COUNT_DIR": str(counts),
    }
    master_args = [
        arg.replace(mount, str(runs), 1) if arg.startswith(mount) else arg for arg in master["command"]
    ]
    master_args += ["--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port)]
    master_args += ["--web-host", "127.0.0.1", "--web-port", str(web_port)]
    worker_args = [
        *as_list(worker["command"]),
        "--master-host",
        "127.0.0.1",
        "--master-port",
        str(master_port),
    ]
    run_dir = runs / RUN_NAME

    with running_target_server("--threads", "16") as url:
        addresses = {"target": url}
        before = embed_requests_ok(url)
        processes = [
            start(master_args, process_env(master, addresses, settings), tmp_path / "master" / "log")
        ]
        processes += [
            start(worker_args, process_env(worker, addresses, settings), tmp_path / f"worker-{i}" / "log")
            for i in range(int(worker["deploy"]["replicas"]))
        ]
        try:
            master_code = processes[0].wait(timeout=150)
            worker_codes = [process.wait(timeout=30) for process in processes[1:]]
        finally:
            for process in processes:
                stop(process)
        served = embed_requests_ok(url) - before
        target = document["services"]["target"]
        image = dockerfile("target")
        check = invocation(as_list(target["healthcheck"]["test"])[1:], image)
        healthcheck = subprocess.run(
            [sys.executable, str(REPO / check.program), f"{url}/health"], capture_output=True, timeout=30
        )

    logs = {path.parent.name: path.read_text(errors="replace") for path in tmp_path.glob("*/log")}
    assert master_code == 0, logs["master"][-4000:]
    assert worker_codes == [0, 0], {name: log[-2000:] for name, log in logs.items()}
    assert healthcheck.returncode == 0, healthcheck.stderr

    # cells.csv: written by the master (GridShape), into the run directory beside Locust's CSVs.
    cells = read_csv(run_dir / "cells.csv")
    assert [row["cell"] for row in cells] == list(CELLS)
    assert all(
        row["end"] and float(row["end"]) > float(row["start"]) and row["users"] == "2" for row in cells
    )
    assert f"cells.csv in {run_dir}" in logs["master"]
    assert not any("cells.csv in" in log for name, log in logs.items() if name != "master")
    # ... and the web UI's embed-bench tab on the master built the run's report when the grid ended.
    assert (run_dir / "report" / "report.html").is_file()
    assert sorted(path for path in tmp_path.rglob("cells.csv") if path.parent.name != "report") == [
        run_dir / "cells.csv"
    ]

    # The master's per-cell counts are the sum of what the two workers sent; both workers took part.
    sent = [json.loads(path.read_text()) for path in sorted(counts.glob("worker-*.json"))]
    assert len(sent) == 2, f"expected one counts file per worker, found {len(sent)}"
    stats = {
        row["Name"]: row for row in read_csv(run_dir / "locust_stats.csv") if row["Name"] != "Aggregated"
    }
    names = set().union(*(record["requests"] for record in sent))
    assert set(stats) == names == {*CELLS, *(f"warmup {cell}" for cell in CELLS)}
    for name, row in stats.items():
        assert int(row["Request Count"]) == sum(record["requests"].get(name, 0) for record in sent), name
        assert row["Failure Count"] == "0" and not any(record["failures"] for record in sent), name
    for cell in CELLS:
        assert int(stats[cell]["Request Count"]) == 2 * REQUESTS_PER_USER
        assert int(stats[f"warmup {cell}"]["Request Count"]) == 2 * WARMUP_REQUESTS
        assert all(record["requests"].get(cell, 0) > 0 for record in sent), f"{cell}: a worker sent nothing"
    # ... and the server answered exactly those.
    assert served == sum(int(row["Request Count"]) for row in stats.values())

    # The report builds from the swarm's run directory (no run.json: the directory names the run).
    report_dir = tmp_path / "report"
    report = subprocess.run(
        [sys.executable, "-m", "embed_bench", "report", str(run_dir), "--out", str(report_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    assert RUN_NAME in (report_dir / "report.md").read_text()
    assert all(cell in (report_dir / "cells.csv").read_text() for cell in CELLS)
