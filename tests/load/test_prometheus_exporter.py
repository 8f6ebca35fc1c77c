"""``GET /metrics`` on Locust's web UI (``embed_bench/load/prometheus_exporter.py``): the load
generator's figures in Prometheus text, read from the runner, valid for promtool, open behind the login."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.doubles.process import running_double
from tests.load.runs import wait_for, web_ui_locust

pytestmark = pytest.mark.usefixtures("spawn")

KEY = "jina_exporter_key"
CELL = "b=3 t=24 c=2"


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_masters_metrics_count_what_locust_counted(tmp_path) -> None:
    """A one-cell swarm of 2 users x 2 requests of 3 x 24 tokens: /metrics says what Locust's own
    /stats/requests says, tokens included (embed-bench's response length), and promtool accepts it."""
    with (
        running_double("jina_api", "--api-key", KEY) as double,
        web_ui_locust("jina_api.py", double.url, tmp_path / "run", "--model", "jina-embeddings-v3") as ui,
    ):
        before = scrape(ui.url)
        assert before[("locust_users", ())] == 0 and before[("locust_running", ())] == 0
        form = {"user_count": "2", "spawn_rate": "2", "host": double.url, "batch_size": "3",
                "passage_tokens": "24", "requests_per_user": "2", "warmup_requests": "1", "api_key": KEY}  # fmt: skip
        request = urllib.request.Request(f"{ui.url}/swarm", data=urllib.parse.urlencode(form).encode())
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read())["success"] is True

        def stopped() -> bool:
            with urllib.request.urlopen(f"{ui.url}/stats/requests", timeout=5) as response:
                return json.loads(response.read())["state"] == "stopped"

        assert wait_for(stopped, timeout_s=30)
        found = scrape(ui.url)
        with urllib.request.urlopen(f"{ui.url}/metrics", timeout=10) as response:
            text = response.read().decode()
    labels = (("method", "POST"), ("name", CELL))
    assert found[("locust_requests_total", labels)] == 4
    assert found[("locust_failures_total", labels)] == 0
    assert found[("locust_response_length_total", labels)] == 4 * 3 * 24  # tokens, as embed-bench counts
    total = (("method", ""), ("name", "Aggregated"))
    assert found[("locust_requests_total", total)] == 6  # with the two warm-up requests
    assert (
        found[("locust_response_time_p95_seconds", labels)]
        >= found[("locust_response_time_p50_seconds", labels)]
        > 0
    )
    assert found[("locust_running", ())] == 0 and found[("locust_workers", ())] == 0
    promtool = shutil.which("promtool")
    if promtool is not None:
        result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_metrics_stay_open_behind_the_login_and_the_rest_does_not(tmp_path) -> None:
    """Prometheus scrapes without Locust's login, as it does the target's /metrics; the UI and its
    statistics stay behind it."""
    env = {"EMBED_BENCH_WEB_USERNAME": "watcher", "EMBED_BENCH_WEB_PASSWORD": "s3cret-pw"}
    with web_ui_locust(
        "self_hosted.py", "http://127.0.0.1:9", tmp_path / "run", "--web-login", env=env
    ) as ui:
        assert ("locust_users", ()) in scrape(ui.url)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{ui.url}/stats/requests", timeout=10)
        assert refused.value.code == 401
