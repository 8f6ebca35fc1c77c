"""Real headless Locust runs of JinaApiUser and SageMakerUser against the contract doubles."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.doubles.process import running_double
from tests.load.runs import (
    assert_complete_run,
    assert_records_match_stats,
    expected_counts,
    finish,
    run_headless,
    run_master_and_workers,
    start_headless,
    wait_for,
    write_grid,
)

pytestmark = pytest.mark.usefixtures("spawn")

JINA_KEY = "jina_double_key"
CELLS = [(1, 2, 16), (3, 4, 64), (2, 8, 128)]  # (concurrency, batch size, passage tokens)
AWS = {"AWS_ACCESS_KEY_ID": "AKIDDOUBLEEXAMPLE", "AWS_SECRET_ACCESS_KEY": "double-secret-key"}
SAGEMAKER_ARGS = ("--sagemaker-endpoint", "jina-v3", "--aws-region", "us-east-1")


def grid(tmp_path: Path, cells=CELLS) -> str:
    return str(write_grid(tmp_path / "grid.toml", cells))


def test_jina_api_user_walks_the_grid_against_the_jina_double(tmp_path):
    with running_double("jina_api", "--api-key", JINA_KEY) as double:
        run = run_headless(
            "jina_api.py", tmp_path / "run", "-H", double.url, "--api-key", JINA_KEY, "--model", "jina-embeddings-v3",
            "--grid", grid(tmp_path), "--requests-per-user", "3", "--warmup-requests", "1",
        )  # fmt: skip
        ledger = double.ledger()
    # The double counts tokens itself (special tokens excluded): b x t means every passage was exact.
    assert_complete_run(run, CELLS, 3, 1, tokens_per_request=lambda b, t: b * t)
    assert ledger["violations"] == []
    assert ledger["received"] == ledger["succeeded"] == sum(expected_counts(CELLS, 3, 1).values())
    records = run.records()
    assert_records_match_stats(run)
    assert records["tokens_server"].sum() == ledger["tokens"]  # the double's own count, kept aside
    assert "strays from the client's" not in run.stderr  # the same tokenizer: no token warning


def test_sagemaker_user_signs_and_walks_the_grid_against_the_sagemaker_double(tmp_path):
    with running_double("sagemaker", "--endpoint", "jina-v3") as double:
        run = run_headless(
            "sagemaker.py", tmp_path / "run", "-H", double.url, *SAGEMAKER_ARGS,
            "--grid", grid(tmp_path), "--requests-per-user", "3", env=AWS,
        )  # fmt: skip
        ledger = double.ledger()
    assert_complete_run(run, CELLS, 3, 1, tokens_per_request=lambda b, t: b * t)
    assert ledger["violations"] == []  # every signature verified with botocore's signer
    assert ledger["received"] == ledger["succeeded"] == sum(expected_counts(CELLS, 3, 1).values())


def test_jina_faults_are_failures_by_class_and_the_run_still_completes(tmp_path):
    faults = ("--fault", "rate_tokens:4", "--fault", "hang:5", "--fault", "short:7", "--fault", "nan:11")
    cells = [(2, 2, 16), (3, 2, 32)]
    with running_double(
        "jina_api", "--api-key", JINA_KEY, *faults, "--hang-seconds", "3", "--retry-after", "0.1"
    ) as d:
        run = run_headless(
            "jina_api.py", tmp_path / "run", "-H", d.url, "--api-key", JINA_KEY, "--grid", grid(tmp_path, cells),
            "--model", "jina-embeddings-v3", "--requests-per-user", "4", "--request-timeout", "1",
        )  # fmt: skip
        ledger = d.ledger()
    failures = run.failure_classes()
    assert set(failures) == {
        "HTTP 429 RATE_TOKEN_LIMIT_EXCEEDED",
        "timeout",
        "bad body: 1 embeddings for 2 inputs",
        "bad body: non-finite embedding values",
    }, run.failures()
    stats = run.stats()
    total = sum(int(row["Request Count"]) for name, row in stats.items() if name != "Aggregated")
    assert total == ledger["received"] == sum(expected_counts(cells, 4, 1).values())  # no retries
    assert sum(failures.values()) == sum(ledger["faults"].values())
    assert ledger["faults"]["rate_tokens"] == failures["HTTP 429 RATE_TOKEN_LIMIT_EXCEEDED"]
    assert_records_match_stats(run)  # the records name every failure as Locust's failures table does
    statuses = run.records().groupby("failure")["status"].agg(set).to_dict()
    assert statuses["HTTP 429 RATE_TOKEN_LIMIT_EXCEEDED"] == {429} and statuses["timeout"] == {0}
    assert [row["end"] != "" for row in run.cells()] == [True, True]
    assert run.returncode == 1  # Locust's exit code when requests failed


def test_sagemaker_faults_are_failures_by_class(tmp_path):
    faults = ("--fault", "throttling:3", "--fault", "model_error:5", "--fault", "container_timeout:7",
              "--fault", "not_ready:11")  # fmt: skip
    with running_double("sagemaker", *faults) as double:
        run = run_headless(
            "sagemaker.py", tmp_path / "run", "-H", double.url, *SAGEMAKER_ARGS, "--grid", grid(tmp_path),
            "--requests-per-user", "3", env=AWS,
        )  # fmt: skip
        ledger = double.ledger()
    failures = run.failure_classes()
    assert set(failures) == {
        "HTTP 400 ThrottlingException",
        "HTTP 424 ModelError: container returned 500",
        "HTTP 424 ModelError: container timeout",
        "HTTP 429 ModelNotReadyException",
    }, run.failures()
    assert ledger["violations"] == []
    assert sum(failures.values()) == sum(ledger["faults"].values())
    assert len(run.cells()) == len(CELLS) and all(row["end"] for row in run.cells())


def test_a_sagemaker_body_over_6_mb_fails_without_being_sent(tmp_path):
    cells = [(1, 128, 8192)]  # 128 passages of 8192 tokens: about 8 MB of JSON
    with running_double("sagemaker") as double:
        run = run_headless(
            "sagemaker.py", tmp_path / "run", "-H", double.url, *SAGEMAKER_ARGS, "--grid", grid(tmp_path, cells),
            "--requests-per-user", "1", "--warmup-requests", "0", env=AWS,
        )  # fmt: skip
        ledger = double.ledger()
    assert run.failure_classes() == {"payload too large: over 6291456 bytes": 1}
    assert ledger["received"] == 0
    assert_records_match_stats(run)
    (record,) = run.records().itertuples()
    assert (record.status, record.bytes_sent, record.latency_ms, record.tokens_client) == (
        0,
        0,
        0.0,
        128 * 8192,
    )


def test_a_server_killed_mid_run_gives_connection_failures_and_a_complete_run(tmp_path):
    cells = [(2, 2, 16), (2, 2, 32)]
    run_dir = tmp_path / "run"
    with running_double("jina_api", "--api-key", JINA_KEY, "--latency-ms", "100") as double:
        started = time.monotonic()
        process = start_headless(
            "jina_api.py", run_dir, "-H", double.url, "--api-key", JINA_KEY, "--grid", grid(tmp_path, cells),
            "--model", "jina-embeddings-v3", "--requests-per-user", "8",
        )  # fmt: skip
        # Warm-ups (2) and a few measured requests in, then the server dies without a goodbye.
        assert wait_for(lambda: double.ledger()["succeeded"] >= 5, timeout_s=60, interval_s=0.05)
        double.kill()
        run = finish(process, run_dir, started)
    failures = run.failure_classes()
    assert set(failures) <= {"connection refused", "connection reset", "connection closed"}, failures
    assert failures.get("connection refused", 0) >= 8, failures  # the whole second cell at least
    stats = run.stats()
    assert {name: int(row["Request Count"]) for name, row in stats.items() if name != "Aggregated"} == (
        expected_counts(cells, 8, 1)
    )
    assert int(stats["b=2 t=16 c=2"]["Request Count"]) > int(stats["b=2 t=16 c=2"]["Failure Count"])
    assert [row["cell"] for row in run.cells()] == ["b=2 t=16 c=2", "b=2 t=32 c=2"]
    assert all(row["end"] for row in run.cells())


@pytest.mark.parametrize("mode", ["processes", "master-and-workers"])
def test_distributed_runs_send_the_same_requests_per_cell(tmp_path, mode):
    cells = CELLS[:2]  # concurrency 1 (one worker idles) and 3 (split 2 + 1)
    with running_double("jina_api", "--api-key", JINA_KEY) as double:
        args = (
            "-H",
            double.url,
            "--api-key",
            JINA_KEY,
            "--model",
            "jina-embeddings-v3",
            "--grid",
            grid(tmp_path, cells),
            "--requests-per-user",
            "3",
        )
        if mode == "processes":
            run = run_headless("jina_api.py", tmp_path / "run", "--processes", "2", *args)
        else:
            run = run_master_and_workers("jina_api.py", tmp_path / "run", 2, *args)
        ledger = double.ledger()
    # The same names and counts as the single-process run of the same grid above.
    assert_complete_run(run, cells, 3, 1, tokens_per_request=lambda b, t: b * t)
    assert ledger["violations"] == []
    assert ledger["received"] == sum(expected_counts(cells, 3, 1).values())
    # The master wrote every worker's requests, each under the id the master knows the worker by.
    assert_records_match_stats(run)
    records = run.records()
    workers = set(re.findall(r"(\S+) \(index \d+\) reported as ready", run.stderr))
    assert len(workers) == 2 and set(records["worker"]) == workers, (workers, set(records["worker"]))
    assert records.groupby("cell")["worker"].nunique().to_dict() == {"b=2 t=16 c=1": 1, "b=4 t=64 c=3": 2}
