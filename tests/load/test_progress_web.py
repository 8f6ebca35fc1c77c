"""The web UI's embed-bench tab during a long preparation: ``state.json`` carries the walker's
progress (cell i of N, payloads built of planned, time in the phase), the bodies counted up as the
processes build them, and Locust's own tab shows the cell as preparing with the same figures."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.doubles.process import running_double
from tests.load.runs import wait_for, web_ui_locust, write_grid

pytestmark = pytest.mark.usefixtures("spawn")

KEY = "jina_progress_key"
SLOW = "b=128 t=2048 c=2"  # 2 users x (1 warm-up + 3 measured) = 8 bodies of 128 x 2048 tokens, 0.6 s each


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "master-and-workers"])
def test_state_json_shows_the_preparation_as_it_goes(tmp_path, workers: int) -> None:
    run_dir = tmp_path / "run"
    grid = write_grid(tmp_path / "grid.toml", [(1, 1, 16), (2, 128, 2048)])
    seen: list[dict] = []
    rows: list[dict] = []
    with (
        running_double("jina_api", "--api-key", KEY) as double,
        web_ui_locust(
            "jina_api.py", double.url, run_dir, "--model", "jina-embeddings-v3", "--api-key", KEY,
            "--grid", str(grid), "--requests-per-user", "3", "--autostart", workers=workers,
            worker_env={"LOCUST_API_KEY": KEY},
        ) as ui,
    ):  # fmt: skip

        def preparing_the_slow_cell() -> bool:
            progress = get_json(f"{ui.url}/embed-bench/state.json")["progress"]
            if progress and progress["cell"] == SLOW and progress["phase"] == "preparing":
                seen.append(progress)
                table = get_json(f"{ui.url}/stats/requests")["extended_stats"][0]["data"]
                rows.append(next(row for row in table if row["cell"] == SLOW))
            return any(0 < p["payloads_built"] < (p["payloads_planned"] or 0) for p in seen)

        assert wait_for(preparing_the_slow_cell, timeout_s=120, interval_s=0.3), ui.process.pid
        assert wait_for(lambda: get_json(f"{ui.url}/stats/requests")["state"] == "stopped", timeout_s=180)
        final = get_json(f"{ui.url}/embed-bench/state.json")
    middle = next(p for p in seen if 0 < p["payloads_built"] < (p["payloads_planned"] or 0))
    assert (middle["step"], middle["steps"], middle["payloads_planned"]) == (2, 2, 8)
    assert middle["processes"] == max(1, workers)
    assert middle["line"].startswith(f"cell 2/2 {SLOW}: preparing, payloads built ")
    assert middle["elapsed_s"] >= 0
    assert all(row["state"] == "preparing" for row in rows), rows
    assert any(row["progress"].startswith("payloads built") for row in rows), rows
    assert final["progress"]["phase"] == "finished"
    assert [cell["requests"] for cell in final["cells"]] == [3, 6]
