"""Locust's web UI: a swarm started over its HTTP interface with custom option values."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request

import pytest

from embed_bench.core.contract import CELLS_CSV_COLUMNS
from tests.doubles.process import running_double
from tests.load.runs import wait_for, web_ui_locust

pytestmark = pytest.mark.usefixtures("spawn")

KEY = "jina_web_ui_key"


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_a_swarm_from_the_web_ui_runs_the_cell_its_form_values_describe(tmp_path):
    run_dir = tmp_path / "run"
    with (
        running_double("jina_api", "--api-key", KEY) as double,
        web_ui_locust("jina_api.py", double.url, run_dir, "--model", "jina-embeddings-v3") as ui,
    ):
        web = ui.url
        form = {
            "user_count": "2",
            "spawn_rate": "2",
            "host": double.url,
            "batch_size": "3",
            "passage_tokens": "24",
            "requests_per_user": "2",
            "warmup_requests": "1",
            "api_key": KEY,
        }
        request = urllib.request.Request(f"{web}/swarm", data=urllib.parse.urlencode(form).encode())
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read())["success"] is True

        def stopped() -> bool:
            return get_json(f"{web}/stats/requests")["state"] == "stopped"

        assert wait_for(stopped, timeout_s=30)  # the shape ends the test after its one cell
        rows = {row["name"]: row for row in get_json(f"{web}/stats/requests")["stats"]}
        ledger = double.ledger()
    output = ui.output
    assert set(rows) == {"b=3 t=24 c=2", "warmup b=3 t=24 c=2", "Aggregated"}, output[-2000:]
    assert (rows["b=3 t=24 c=2"]["num_requests"], rows["b=3 t=24 c=2"]["num_failures"]) == (4, 0)
    assert rows["b=3 t=24 c=2"]["avg_content_length"] == 3 * 24
    assert ledger["violations"] == [] and ledger["received"] == 6
    cells = (run_dir / "cells.csv").read_text().splitlines()
    assert cells[0] == ",".join(CELLS_CSV_COLUMNS)
    assert cells[1].startswith("b=3 t=24 c=2,0,") and cells[1].endswith(
        ",2,4,4,4,,,,"
    )  # no rate, no drops, no worker lost
