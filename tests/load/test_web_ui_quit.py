"""The web-UI Locust quits at once on Ctrl-C (SIGINT), whatever it is doing, and an unattended one
(``--autostart --autoquit``) still waits for the report it was started for.

A SIGINT while the run's report was being built used to wait for the whole build (``python -m
reports``, 9 s on the 2-core machine, more for a longer run) before Locust exited.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.load.runs import REPO, free_port, locust_command, locust_env, wait_for, web_ui_locust, write_grid

pytestmark = [pytest.mark.usefixtures("spawn"), pytest.mark.serial]

EXIT_WITHIN_S = 3.0
CELLS = [(1, 1, 16), (2, 1, 16)]  # (concurrency, batch size, passage tokens): a second or two each


@pytest.fixture(scope="module")
def target_url() -> Iterator[str]:
    from tests.support.target import running_target_server

    with running_target_server("--batching", "continuous") as url:
        yield url


def state(web: str) -> dict:
    with urllib.request.urlopen(f"{web}/embed-bench/state.json", timeout=5) as response:
        return json.loads(response.read())


def first_cell_state(web: str) -> str | None:
    """The state of the run's first cell; None while the web UI does not answer or shows no cell."""
    try:
        cells = state(web)["cells"]
    except OSError:
        return None
    return cells[0]["state"] if cells else None


def start_grid(web: str, host: str, grid: Path) -> None:
    form = {"user_count": "1", "spawn_rate": "1", "host": host, "grid": str(grid), "requests_per_user": "3"}
    request = urllib.request.Request(f"{web}/swarm", data=urllib.parse.urlencode(form).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["success"] is True


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return False


def interrupt(process: subprocess.Popen[str], signum: int = signal.SIGINT) -> float:
    """SIGINT (as Ctrl-C sends it) or SIGTERM; seconds until the process exited (it must exit 0)."""
    started = time.monotonic()
    process.send_signal(signum)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"Locust did not exit within 60 s of {signal.Signals(signum).name}") from None
    seconds = time.monotonic() - started
    assert process.returncode == 0, process.returncode
    return seconds


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_the_report_builds_exits_at_once_and_stops_the_build(tmp_path, target_url, signum):
    run_dir = tmp_path / "run"
    grid = write_grid(tmp_path / "grid.toml", CELLS)
    with web_ui_locust("self_hosted.py", target_url, run_dir) as web:
        start_grid(web.url, target_url, grid)
        assert wait_for(lambda: state(web.url)["report"]["state"] == "building", timeout_s=120), state(
            web.url
        )
        builders = children(web.process.pid)
        assert builders, "no python -m reports process under Locust while the report builds"
        seconds = interrupt(web.process, signum)
    print(f"\n{signal.Signals(signum).name} while the report builds: exited in {seconds:.2f} s")
    assert seconds < EXIT_WITHIN_S, web.output
    assert wait_for(lambda: not any(alive(pid) for pid in builders), timeout_s=2), "the build outlived Locust"
    assert "report of" in web.output and "not built: stopped by the quit" in web.output, web.output
    assert not (run_dir / "report" / "report.html").exists()
    assert (run_dir / "cells.csv").is_file()  # the run itself is on record


def test_ctrl_c_during_a_cell_exits_at_once(tmp_path, target_url):
    run_dir = tmp_path / "run"
    grid = write_grid(tmp_path / "grid.toml", [(4, 8, 256)])
    with web_ui_locust("self_hosted.py", target_url, run_dir) as web:
        start_grid(web.url, target_url, grid)
        assert wait_for(lambda: first_cell_state(web.url) == "running", timeout_s=60), state(web.url)
        seconds = interrupt(web.process)
    print(f"\nSIGINT during a cell: exited in {seconds:.2f} s")
    assert seconds < EXIT_WITHIN_S, web.output
    assert not (run_dir / "report" / "report.html").exists()  # no build started by the quit's stop


def test_an_autoquitting_web_ui_waits_for_its_report(tmp_path, target_url):
    run_dir = tmp_path / "run"
    grid = write_grid(tmp_path / "grid.toml", CELLS[:1])
    port = free_port()
    command = locust_command(
        "self_hosted.py", "--web-host", "127.0.0.1", "--web-port", str(port), "-H", target_url,
        "--csv", str(run_dir / "locust"), "--autostart", "--autoquit", "1", "-u", "1",
        "--grid", str(grid), "--requests-per-user", "2",
    )  # fmt: skip
    result = subprocess.run(command, cwd=REPO, env=locust_env(), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (run_dir / "report" / "report.html").is_file(), result.stderr
    assert "embed-bench report ready" in result.stderr


def test_ctrl_c_during_an_autostarted_run_does_not_wait_for_its_report(tmp_path, target_url):
    """Locust's --autostart answers a Ctrl-C during the run by stopping it and taking its --autoquit
    path, which waits for the report of an unattended run; after a Ctrl-C it must not."""
    run_dir = tmp_path / "run"
    grid = write_grid(tmp_path / "grid.toml", [(4, 8, 256)])
    port = free_port()
    command = locust_command(
        "self_hosted.py", "--web-host", "127.0.0.1", "--web-port", str(port), "-H", target_url,
        "--csv", str(run_dir / "locust"), "--autostart", "--autoquit", "0", "-u", "1",
        "--grid", str(grid), "--requests-per-user", "20",
    )  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, env=locust_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        web = f"http://127.0.0.1:{port}"
        assert wait_for(lambda: process.poll() is None and first_cell_state(web) == "running", timeout_s=90)
        seconds = interrupt(process)
        output = process.stdout.read() if process.stdout else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    print(f"\nSIGINT during an autostarted run: exited in {seconds:.2f} s")
    assert seconds < EXIT_WITHIN_S, output
    assert not (run_dir / "report" / "report.html").exists()
