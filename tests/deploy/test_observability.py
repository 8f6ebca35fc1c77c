"""The observability profile of docker-compose.yml: Prometheus scraping the target and the Locust
master, Grafana with its provisioned dashboard. The files are checked against each other and against
compose; the scrape config with the real ``promtool``; and the real Prometheus binary scrapes a live
bundled server and a live Locust master, then answers every panel's query."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.deploy.files import COMPOSE_FILE, REPO, compose, env_file_entries, read_env_file

OBSERVABILITY = REPO / "docker" / "observability"
PROMETHEUS_CONFIG = OBSERVABILITY / "prometheus.yml"
DASHBOARDS = OBSERVABILITY / "grafana" / "dashboards"
PROVISIONING = OBSERVABILITY / "grafana" / "provisioning"
GPU_SERIES = "embed_gpu_"  # exported only by a server with a GPU and NVML


def profile_services(shell: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    return {
        name: s for name, s in compose(shell)["services"].items() if "observability" in s.get("profiles", [])
    }


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (relative to the compose file)."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            found[target] = (COMPOSE_FILE.parent / source).resolve()
    return found


def in_container(service: dict[str, Any], path: str) -> Path:
    """The host file a container path of ``service`` shows, through its bind mounts."""
    for target, source in mounts(service).items():
        if PurePosixPath(path).is_relative_to(target):
            return source / PurePosixPath(path).relative_to(target)
    raise AssertionError(f"{path} is not on a bind mount")


def scrape_jobs(config: dict[str, Any]) -> dict[str, list[str]]:
    return {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }


def dashboard() -> dict[str, Any]:
    return json.loads((DASHBOARDS / "embed-bench.json").read_text())


def panel_queries() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"]) for panel in dashboard()["panels"] for target in panel["targets"]
    ]


def test_the_profile_adds_prometheus_and_grafana_and_nothing_else_changes() -> None:
    every = compose()["services"]
    assert set(profile_services()) == {"prometheus", "grafana"}
    assert {name for name, s in every.items() if not s.get("profiles")} == {"target", "master", "worker"}
    assert every["prometheus"]["image"].startswith("prom/prometheus:v")
    assert every["grafana"]["image"].startswith("grafana/grafana:")
    assert every["grafana"]["depends_on"] == ["prometheus"]


@pytest.mark.parametrize(
    ("shell", "address"), [({}, "127.0.0.1"), ({"EMBED_BENCH_BIND": "0.0.0.0"}, "0.0.0.0")]
)
def test_prometheus_and_grafana_are_published_where_the_swarm_is(shell: dict[str, str], address: str) -> None:
    found = profile_services(shell)
    assert found["prometheus"]["ports"] == [f"{address}:9090:9090"]
    assert found["grafana"]["ports"] == [f"{address}:3000:3000"]


def test_prometheus_scrapes_the_target_and_the_masters_web_ui_where_compose_runs_them() -> None:
    every = compose()["services"]
    prometheus = every["prometheus"]
    config_path = next(
        arg.split("=", 1)[1] for arg in prometheus["command"] if arg.startswith("--config.file=")
    )
    assert in_container(prometheus, config_path) == PROMETHEUS_CONFIG
    jobs = scrape_jobs(yaml.safe_load(PROMETHEUS_CONFIG.read_text()))
    target_port = every["target"]["ports"][0].rsplit(":", 1)[-1]
    web_port = every["master"]["command"][every["master"]["command"].index("--web-port") + 1]
    assert jobs == {"embed-bench-target": [f"target:{target_port}"], "locust-master": [f"master:{web_port}"]}


def test_grafana_provisions_the_prometheus_data_source_and_the_dashboard() -> None:
    grafana = compose()["services"]["grafana"]
    (datasource,) = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090" and datasource["type"] == "prometheus"
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards" / "embed-bench.yml").read_text())["providers"]
    assert in_container(grafana, provider["options"]["path"]) == DASHBOARDS
    assert in_container(grafana, "/etc/grafana/provisioning") == PROVISIONING
    settings: dict[str, str] = {}
    for path, required in env_file_entries(grafana):
        assert path.is_file() or (not required and (REPO / "docker" / f"{path.name}.example").is_file()), path
        if path.is_file():
            settings |= read_env_file(path)
    assert (
        in_container(grafana, settings["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
        == DASHBOARDS / "embed-bench.json"
    )
    board = dashboard()
    assert board["panels"] and len({panel["id"] for panel in board["panels"]}) == len(board["panels"])
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["targets"] and all(
            target["datasource"]["uid"] == datasource["uid"] for target in panel["targets"]
        )


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not installed (apt-get install prometheus; .ci/run installs it)")
    return found


def test_promtool_accepts_the_scrape_config(spawn: None) -> None:
    result = subprocess.run(
        [promtool(), "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_refuses_a_broken_scrape_config(tmp_path: Path, spawn: None) -> None:
    """The check can fail: a job without its targets' list is an error promtool names."""
    broken = tmp_path / "prometheus.yml"
    broken.write_text(PROMETHEUS_CONFIG.read_text().replace("scrape_interval: 5s", "scrape_interval: often"))
    result = subprocess.run(
        [promtool(), "check", "config", str(broken)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0 and "often" in result.stdout + result.stderr


def watch_and_query(binary: str, tmp_path: Path, local: dict[str, str]) -> dict[tuple[str, str], list]:
    """Run Prometheus on the compose scrape config with each job's target at its ``local`` URL and a 1 s
    interval; once both targets are up and a few scrapes in, every panel's query and its answer."""
    from tests.load.runs import free_port, wait_for

    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"] |= {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [urllib.parse.urlsplit(local[job["job_name"]]).netloc]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    prometheus = f"http://127.0.0.1:{port}"
    log = tmp_path / "prometheus.log"
    with log.open("w") as stream:
        process = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=stream,
        )  # fmt: skip
    try:

        def both_up() -> bool:
            try:
                ups = query(prometheus, "up")
            except OSError:
                return False
            return len(ups) == 2 and all(float(series["value"][1]) == 1 for series in ups)

        assert wait_for(both_up, timeout_s=60), log.read_text()[-2000:]
        time.sleep(8)  # several scrapes under load, so every rate() has points in its window
        return {(title, expr): query(prometheus, expr) for title, expr in panel_queries()}
    finally:
        process.terminate()
        process.wait(timeout=30)


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


@pytest.mark.serial
def test_the_real_prometheus_scrapes_a_live_server_and_master_and_answers_every_panel(
    tmp_path: Path, spawn: None
) -> None:
    """The compose scrape config with the targets at their local addresses and a 1 s interval; the
    bundled server under load from a Locust master with its web UI; then every panel's PromQL through
    Prometheus' HTTP API must return series -- except the GPU panels, which on this CPU must not."""
    prometheus_binary = shutil.which("prometheus")
    if prometheus_binary is None:
        pytest.skip("prometheus not installed (apt-get install prometheus; .ci/run installs it)")
    from tests.load.runs import web_ui_locust
    from tests.support.target import running_target_server

    locust_args = ("--autostart", "-u", "2", "-r", "2", "--batch-size", "1", "--passage-tokens", "32",
                   "--requests-per-user", "400")  # fmt: skip
    with (
        running_target_server("--batching", "continuous", env={"OMP_NUM_THREADS": "1"}) as target,
        web_ui_locust("self_hosted.py", target, tmp_path / "run", *locust_args) as master,
    ):
        local = {"embed-bench-target": target, "locust-master": master.url}
        answers = watch_and_query(prometheus_binary, tmp_path, local)
    empty = [
        f"{title}: {expr}"
        for (title, expr), result in answers.items()
        if not result and GPU_SERIES not in expr
    ]
    assert not empty, "panels without data:\n" + "\n".join(empty)
    gpu = [key for key in answers if GPU_SERIES in key[1]]
    assert gpu and all(not answers[key] for key in gpu)  # no GPU here: those panels stay empty
    tokens = answers[next(key for key in answers if key[0].startswith("Client: successful tokens/s"))]
    assert float(tokens[0]["value"][1]) > 0  # the swarm's tokens flowed while Prometheus watched
