"""The embed-bench tab's HTTP side on a real Locust web UI, without a browser (runs where Chromium
cannot): the start form's check, the tab's rows in ``/stats/requests``, the page, the report."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.doubles.process import running_double
from tests.load.runs import wait_for, web_ui_locust

pytestmark = pytest.mark.usefixtures("spawn")

CELL = "b=3 t=24 c=2"
KEY = "jina_web_ui_hooks_key"


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def post(url: str, form: dict[str, str]) -> dict:
    request = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


def test_the_form_check_the_tab_rows_the_page_and_the_report_over_http(tmp_path):
    run_dir = tmp_path / "run"
    with (
        running_double("jina_api", "--api-key", KEY) as double,
        web_ui_locust("jina_api.py", double.url, run_dir, "--model", "jina-embeddings-v3") as ui,
    ):
        web = ui.url
        assert b'id="embed-bench-link"' in get(web)  # the badge on Locust's page
        assert b'id="chart"' in get(f"{web}/embed-bench")
        with pytest.raises(urllib.error.HTTPError) as no_report:
            get(f"{web}/embed-bench/report")
        assert no_report.value.code == 404

        form = {
            "user_count": "2",
            "spawn_rate": "2",
            "host": double.url,
            "api_key": KEY,
            "batch_size": "notanumber",
        }
        refused = post(f"{web}/swarm", form)
        assert refused["success"] is False
        assert refused["message"] == (
            "Batch size (--batch-size): 'notanumber' is not valid; it accepts a whole number, "
            "e.g. 1 (the default)."
        )
        assert json.loads(get(f"{web}/stats/requests"))["state"] == "ready"  # nothing started

        form |= {"batch_size": "3", "passage_tokens": "24", "requests_per_user": "2"}
        assert post(f"{web}/swarm", form)["success"] is True

        def report() -> dict:
            return json.loads(get(f"{web}/embed-bench/state.json"))["report"]

        assert wait_for(lambda: report()["state"] in ("ready", "failed"), timeout_s=90)
        assert report()["state"] == "ready", report()
        stats = json.loads(get(f"{web}/stats/requests"))
        html = get(f"{web}/embed-bench/report")
        with urllib.request.urlopen(f"{web}/embed-bench/report?download=1", timeout=10) as download:
            assert download.headers["Content-Disposition"].startswith("attachment")
            assert download.read() == html
    output = ui.output
    (tab,) = stats["extended_stats"]
    assert tab["key"] == "embed-bench"
    (row,) = tab["data"]
    locust_row = next(entry for entry in stats["stats"] if entry["name"] == CELL)
    assert (row["cell"], row["state"], row["requests"], row["failures"]) == (CELL, "done", 4, 0), output[
        -2000:
    ]
    assert locust_row["num_requests"] == 4
    assert b"<title>embed-bench report</title>" in html
