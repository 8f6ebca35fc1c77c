"""``embed-bench run`` samples the target's Prometheus endpoint into server_metrics.csv: which endpoint
by default and on request, what run.json says, and on the real server that the sampled queue grows
with the offered rate while every sample lies within the run."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from embed_bench.commands.run import build_parser
from embed_bench.commands.telemetry import TelemetryError, plan_telemetry
from embed_bench.core.server_metrics import parse_labels
from tests.load.runs import locust_env


def options(*argv: str) -> argparse.Namespace:
    args, _ = build_parser().parse_known_args(["--backend", "self-hosted", *argv])
    return args


def test_the_self_hosted_backend_samples_its_metrics_by_default() -> None:
    plan = plan_telemetry(options(), "self-hosted", "http://127.0.0.1:8000/")
    assert (plan.url, plan.interval_s) == ("http://127.0.0.1:8000/metrics", 1.0)
    assert plan.record() == {"url": "http://127.0.0.1:8000/metrics", "interval_s": 1.0}


@pytest.mark.parametrize("backend", ["jina", "sagemaker", "openai"])
def test_other_backends_say_why_nothing_is_sampled_unless_given_a_url(backend: str) -> None:
    plan = plan_telemetry(options(), backend, "https://api.example")
    assert plan.url is None
    assert plan.record() == {"url": None, "note": plan.reason}
    assert f"not available: the {backend} backend" in plan.reason and "--server-metrics-url" in plan.reason
    given = plan_telemetry(
        options("--server-metrics-url", "http://127.0.0.1:9000/metrics", "--server-metrics-interval", "2"),
        backend,
        "https://api.example",
    )
    assert (given.url, given.interval_s) == ("http://127.0.0.1:9000/metrics", 2.0)


def test_off_turns_sampling_off() -> None:
    plan = plan_telemetry(options("--server-metrics-url", "off"), "self-hosted", "http://127.0.0.1:8000")
    assert plan.url is None and plan.record()["note"] == "off (--server-metrics-url off)"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--server-metrics-url", "127.0.0.1:8000/metrics"], "must be a URL like"),
        (["--server-metrics-url", "ftp://host/metrics"], "must be a URL like"),
        (["--server-metrics-interval", "0"], "takes 0.1 to 60 seconds"),
        (["--server-metrics-interval", "600"], "takes 0.1 to 60 seconds"),
    ],
)
def test_bad_values_are_refused_with_what_to_give(argv: list[str], message: str) -> None:
    with pytest.raises(TelemetryError, match=message):
        plan_telemetry(options(*argv), "self-hosted", "http://127.0.0.1:8000")


def test_a_bad_value_stops_the_run_before_anything_is_written(tmp_path: Path, spawn: None) -> None:
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "embed_bench", "run", "--backend", "self-hosted", "--host",
         "http://127.0.0.1:9", "--out", str(out), "--server-metrics-url", "nonsense"],
        capture_output=True, text=True, timeout=120, env=locust_env(),
    )  # fmt: skip
    assert result.returncode == 2
    assert "--server-metrics-url must be a URL like" in result.stderr
    assert not out.exists()


RATE_GRID = """
[[cells]]
request_rate = [2, 40]
duration_s = 6
arrival = "constant"
batch_size = 1
passage_tokens = 128
"""


@pytest.mark.serial
def test_the_sampled_queue_rises_with_the_offered_rate(tmp_path: Path, spawn: None) -> None:
    """Two rate cells against the bundled server on one CPU thread: 2 requests/s (well within its
    capacity, about 10-15 here) and 40 (far over it). The queue the server reports while the second
    runs is many times the first's; every sample lies between run.json's start and end."""
    from tests.support.target import running_target_server

    grid = tmp_path / "rates.toml"
    grid.write_text(RATE_GRID)
    out = tmp_path / "run"
    with running_target_server("--batching", "continuous", env={"OMP_NUM_THREADS": "1"}) as url:
        with urllib.request.urlopen(f"{url}/info", timeout=10) as response:
            listener = json.loads(response.read())["metrics"]["port"]
        result = subprocess.run(
            [sys.executable, "-m", "embed_bench", "run", "--backend", "self-hosted", "--host", url,
             "--out", str(out), "--grid", str(grid), "--max-in-flight", "256", "--max-lag", "30"],
            capture_output=True, text=True, timeout=240, env=locust_env(),
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    run = json.loads((out / "run.json").read_text())
    sampled = run["server_metrics"]
    # The server's own metrics listener, which answers while its 64 request threads all hold queued
    # work (a scrape through the main port would wait behind them at 40 requests/s).
    assert sampled["url"] == f"http://127.0.0.1:{listener}/metrics" and sampled["interval_s"] == 1.0
    assert sampled["failed"] == 0 and sampled["scrapes"] >= 12, sampled  # two 6 s cells, once a second

    samples = pd.read_csv(out / "server_metrics.csv", keep_default_na=False)
    started = dt.datetime.fromisoformat(run["started_at"]).timestamp()
    ended = dt.datetime.fromisoformat(run["ended_at"]).timestamp()
    # run.json's times are whole seconds: the samples lie within them, give or take that rounding.
    assert started - 1 <= samples["time"].min() and samples["time"].max() <= ended + 1
    cells = pd.read_csv(out / "cells.csv")
    queue = samples[samples["metric"] == "embed_queue_requests"]

    def mean_queue(cell: str) -> float:
        row = cells[cells["cell"] == cell].iloc[0]
        within = queue[(queue["time"] >= row["start"]) & (queue["time"] <= row["end"])]
        assert len(within) >= 4, f"{cell}: {len(within)} samples"
        return float(within["value"].mean())

    low, high = mean_queue("r=2 b=1 t=128"), mean_queue("r=40 b=1 t=128")
    print(f"\nmean queue: {low:.2f} requests at 2/s, {high:.1f} at 40/s")
    assert high > max(10.0, 10 * low)
    # The pass series came along: more requests shared each pass at 40/s than at 2/s.
    assert {"embed_batch_requests_sum", "embed_batch_requests_count", "process_cpu_seconds_total"} <= set(
        samples["metric"]
    )
    assert (samples.loc[samples["metric"] == "up", "value"] == 1).all()
    assert all(parse_labels(labels) is not None for labels in samples["labels"])
