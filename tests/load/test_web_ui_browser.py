"""The embed-bench tab in real headless Chromium, against the real bundled server.

Playwright drives Debian's ``chromium`` (``.ci/run`` installs it); without it, or without Playwright,
the module is skipped with the reason. Screenshots go to tests/artifacts/ (gitignored).
"""

from __future__ import annotations

import contextlib
import csv
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.load.runs import REPO, free_port, locust_command, locust_env, wait_for, write_grid

pytestmark = pytest.mark.usefixtures("spawn")


ARTIFACTS = REPO / "tests" / "artifacts"
CELLS = [(1, 16, 128), (2, 16, 128)]  # (concurrency, batch size, passage tokens): seconds each on a CPU
CELL_NAMES = [f"b={b} t={t} c={c}" for c, b, t in CELLS]
STATE_ORDER = ["waiting", "preparing", "running", "done"]
RUN_TIMEOUT_S = 150


@pytest.fixture(scope="module")
def target_url() -> Iterator[str]:
    from tests.support.target import running_target_server

    with running_target_server("--batching", "continuous") as url:
        yield url


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    yield context.new_page()
    context.close()


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def answers(url: str) -> bool:
    try:
        get_json(url)
        return True
    except OSError:
        return False


@contextlib.contextmanager
def web_ui_locust(run_dir: Path, target_url: str, workers: int = 0) -> Iterator[str]:
    """Locust with its web UI on a free port (a master and ``workers`` worker processes when >0);
    yields the web UI's URL once it answers (and every worker is connected)."""
    port = free_port()
    web = f"http://127.0.0.1:{port}"
    common = ("--web-host", "127.0.0.1", "--web-port", str(port), "-H", target_url)
    role: tuple[str, ...] = ()
    if workers:
        master_port = str(free_port())
        role = ("--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", master_port)
    log = (run_dir.parent / f"{run_dir.name}-locust.log").open("w")
    processes = [
        subprocess.Popen(
            locust_command("self_hosted.py", *common, *role, "--csv", str(run_dir / "locust")),
            cwd=REPO, env=locust_env(), stdout=log, stderr=subprocess.STDOUT,
        )
    ]  # fmt: skip
    processes += [
        subprocess.Popen(
            locust_command("self_hosted.py", "--worker", "--master-host", "127.0.0.1", "--master-port", master_port),
            cwd=REPO, env=locust_env(), stdout=log, stderr=subprocess.STDOUT,
        )
        for _ in range(workers)
    ]  # fmt: skip
    try:
        assert wait_for(lambda: answers(f"{web}/embed-bench/state.json"), timeout_s=60)
        if workers:
            assert wait_for(lambda: get_json(f"{web}/worker-count")["worker_count"] == workers, timeout_s=60)
        yield web
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def fill_custom(page, values: dict[str, str]) -> None:
    """Open the form's "Custom parameters" and type values into fields named as Locust names them."""
    accordion = page.get_by_role("button", name="Custom parameters")
    if accordion.get_attribute("aria-expanded") != "true":
        accordion.click()
    for name, value in values.items():
        page.fill(f'input[name="{name}"]', value)


def live_rows(page) -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        "#cells tbody tr",
        """rows => rows.map(row => Object.fromEntries([...row.cells].map(
               cell => [cell.dataset.key, cell.dataset.key === 'state' ? row.dataset.state : cell.textContent])))""",
    )


@dataclass
class Watched:
    """What the live page showed while a run went on."""

    states: dict[str, list[str]]  # per cell, the states it showed, in order
    chart_points: list[int]  # the chart's number of bins at each look


def watch_live_page(page, during: Path, timeout_s: float = RUN_TIMEOUT_S) -> Watched:
    """Look at the live page four times a second until the run's report is ready; screenshot it
    once while a cell runs after another one is done (or, failing that, while any cell runs)."""
    watched = Watched({}, [])
    shot = fallback = False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = live_rows(page)
        for row in rows:
            seen = watched.states.setdefault(row["cell"], [])
            if not seen or seen[-1] != row["state"]:
                seen.append(row["state"])
        watched.chart_points.append(int(page.get_attribute("#chart", "data-points") or 0))
        running = any(row["state"] == "running" for row in rows)
        if running and not shot and watched.chart_points[-1] >= 3:
            shot = any(row["state"] == "done" for row in rows)
            if shot or not fallback:
                page.screenshot(path=during, full_page=True)
                fallback = True
        report = page.get_attribute("#report", "data-state")
        assert report != "failed", page.inner_text("#report")
        if report == "ready":
            return watched
        time.sleep(0.25)
    raise AssertionError(f"no report within {timeout_s} s; the page showed {watched.states}")


def assert_states_in_order(watched: Watched, cells: list[str]) -> None:
    for cell in cells:
        seen = watched.states[cell]
        assert seen == sorted(seen, key=STATE_ORDER.index), watched.states  # never backwards
        assert seen[-1] == "done" and "running" in seen, watched.states


def assert_chart_grew(watched: Watched) -> None:
    points = watched.chart_points
    assert points[-1] > 0 and len(set(points)) > 2, points  # the chart gained bins as the run went on


def locust_stats(run_dir: Path) -> dict[str, dict[str, str]]:
    with (run_dir / "locust_stats.csv").open(newline="") as stream:
        return {row["Name"]: row for row in csv.DictReader(stream)}


def report_cells(run_dir: Path) -> dict[str, dict[str, str]]:
    with (run_dir / "report" / "cells.csv").open(newline="") as stream:
        return {row["cell"]: row for row in csv.DictReader(stream)}


def assert_figures_agree(web: str, page, run_dir: Path, expected_requests: dict[str, int]) -> None:
    """The page's requests and failures per cell are Locust's and the report's; its tokens/s is the
    report's successful requests x nominal tokens / the report's cell duration."""
    stats, report = locust_stats(run_dir), report_cells(run_dir)
    shown = {row["cell"]: row for row in live_rows(page)}
    state = {cell["cell"]: cell for cell in get_json(f"{web}/embed-bench/state.json")["cells"]}
    assert set(shown) == set(expected_requests), shown
    for name, requests in expected_requests.items():
        assert int(shown[name]["requests"]) == int(stats[name]["Request Count"]) == requests
        assert int(report[name]["request_count"]) == requests
        assert (
            int(shown[name]["failures"])
            == int(stats[name]["Failure Count"])
            == int(report[name]["failure_count"])
        )
        tokens = int(report[name]["success_count"]) * int(report[name]["nominal_tokens_per_request"])
        assert state[name]["throughput_tokens_per_s"] == pytest.approx(
            tokens / float(report[name]["duration_s"])
        )


def locust_tab_rows(page) -> dict[str, list[str]]:
    """The embed-bench tab inside Locust's own page: cell -> its row's texts."""
    rows = page.eval_on_selector_all(
        "table tbody tr", "rows => rows.map(row => [...row.cells].map(cell => cell.textContent))"
    )
    return {row[0]: row for row in rows if row}


def start(page) -> None:
    page.get_by_role("button", name="Start", exact=True).click()


def test_a_grid_from_the_form_runs_live_in_the_tab_ends_in_its_report_and_a_second_run_replaces_it(
    tmp_path, target_url, page
):
    ARTIFACTS.mkdir(exist_ok=True)
    run_dir = tmp_path / "run"
    grid = write_grid(tmp_path / "grid.toml", CELLS)
    with web_ui_locust(run_dir, target_url) as web:
        page.goto(web)

        # A wrong value: a message that names the option and what it accepts; nothing starts.
        fill_custom(page, {"batchSize": "notanumber"})
        start(page)
        message = page.get_by_text("Batch size (--batch-size): 'notanumber' is not valid")
        message.wait_for(timeout=10_000)
        assert "it accepts a whole number" in message.inner_text()
        page.screenshot(path=ARTIFACTS / "web-ui-bad-value.png", full_page=True)
        assert get_json(f"{web}/stats/requests")["state"] == "ready"
        assert not (run_dir / "cells.csv").exists()

        # The grid with custom values, watched in Locust's tab and on the live page.
        fill_custom(
            page, {"batchSize": "1", "grid": str(grid), "requestsPerUser": "3", "warmupRequests": "1"}
        )
        start(page)
        page.get_by_role("tab", name="embed-bench").click()
        page.get_by_role("cell", name=CELL_NAMES[0]).wait_for(timeout=30_000)
        live = page.context.new_page()
        live.goto(f"{web}/embed-bench")
        watched = watch_live_page(live, ARTIFACTS / "web-ui-live-running.png")
        page.screenshot(path=ARTIFACTS / "web-ui-locust-tab.png", full_page=True)
        live.screenshot(path=ARTIFACTS / "web-ui-live-done.png", full_page=True)
        assert_states_in_order(watched, CELL_NAMES)
        assert watched.states[CELL_NAMES[1]][0] in ("waiting", "preparing")
        assert_chart_grew(watched)

        # The report, opened from the page.
        with live.expect_popup() as popup_info:
            live.get_by_role("link", name="Open report").click()
        report = popup_info.value
        report.wait_for_load_state()
        assert report.title() == "embed-bench report"
        total = sum(3 * c for c, _, _ in CELLS)
        assert report.locator("tr", has_text="requests measured").inner_text().split()[-1] == str(total)
        report.close()

        expected = {f"b={b} t={t} c={c}": 3 * c for c, b, t in CELLS}
        assert_figures_agree(web, live, run_dir, expected)
        tab = locust_tab_rows(page)
        assert {name: int(tab[name][3]) for name in expected} == expected  # Locust's tab: the same counts

        # A second run from the same UI: the page shows the new run only.
        page.get_by_role("button", name="New").click()
        fill_custom(page, {"grid": "", "batchSize": "2", "passageTokens": "16", "requestsPerUser": "2"})
        # React built the form anew: it carries embed-bench's labels again, none of Locust's own.
        page.get_by_text("SLO p95 (ms) \u2014 ").first.wait_for(timeout=10_000)
        assert page.get_by_text("Slo P9 5Ms").count() == 0
        start(page)
        single = "b=2 t=16 c=1"
        assert wait_for(lambda: [row["cell"] for row in live_rows(live)] == [single], timeout_s=30), (
            live_rows(live)
        )
        watched = watch_live_page(live, ARTIFACTS / "web-ui-second-run.png")
        assert_states_in_order(watched, [single])
        assert_figures_agree(web, live, run_dir, {single: 2})


def test_the_tab_shows_a_swarm_on_its_master(tmp_path, target_url, page):
    ARTIFACTS.mkdir(exist_ok=True)
    run_dir = tmp_path / "swarm"
    grid = write_grid(tmp_path / "grid.toml", CELLS)
    with web_ui_locust(run_dir, target_url, workers=1) as web:
        page.goto(web)
        fill_custom(page, {"grid": str(grid), "requestsPerUser": "2"})
        start(page)
        live = page.context.new_page()
        live.goto(f"{web}/embed-bench")
        watched = watch_live_page(live, ARTIFACTS / "web-ui-swarm-running.png")
        live.screenshot(path=ARTIFACTS / "web-ui-swarm-done.png", full_page=True)
        assert_states_in_order(watched, CELL_NAMES)
        assert_figures_agree(web, live, run_dir, {f"b={b} t={t} c={c}": 2 * c for c, b, t in CELLS})
