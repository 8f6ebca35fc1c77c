"""Real headless Locust runs against the real bundled target server (all-MiniLM-L6-v2 on CPU)."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.locustfiles.runs import assert_complete_run, assert_records_match_stats, run_headless, write_grid

pytestmark = pytest.mark.slow

# (concurrency, batch size, passage tokens); MiniLM truncates at 256 tokens including [CLS] and [SEP].
CELLS = [(1, 2, 16), (3, 4, 64), (2, 2, 512)]


def server_tokens(batch: int, tokens: int) -> int:
    """What the server reports: every token it embedded, specials included, after truncation."""
    return batch * min(tokens + 2, 256)


def client_tokens(batch: int, tokens: int) -> int:
    """What Locust's CSVs credit: the tokens sent, counted by the client."""
    return batch * tokens


def assert_records_of_the_bundled_server(run, backend: str) -> None:
    """Every request on record as Locust counted it, with the server's own usage and timing headers,
    and one truncation warning for the one cell over the model's 256-token limit."""
    assert_records_match_stats(run)
    records = run.records()
    assert (records["ok"] == 1).all()
    expected = [
        server_tokens(b, t) for b, t in zip(records["batch_size"], records["passage_tokens"], strict=True)
    ]
    assert records["tokens_server"].tolist() == expected
    for column in ("queue_ms", "inference_ms", "server_total_ms"):
        assert (records[column] >= 0).all(), column  # present (no NaN) on every response
    assert records["tokenization_ms"].isna().all()  # TEI's header; the bundled server sends none
    assert (records["server_total_ms"] <= records["latency_ms"]).all()
    assert (records["bytes_sent"] > 0).all() and (records["bytes_received"] > 0).all()
    assert set(records["worker"]) == {"local"}
    assert set(records["backend"]) == {backend}
    warnings = [line for line in run.stderr.splitlines() if "strays from the client's" in line]
    assert len(warnings) == 1 and "b=2 t=512 c=2" in warnings[0] and "truncation" in warnings[0], warnings


@pytest.fixture(scope="module")
def target_url():
    from tests.support.target import running_target_server  # the target server's own test helper

    with running_target_server("--batching", "continuous") as url:
        yield url


def test_self_hosted_user_walks_the_grid_on_embed(tmp_path, target_url):
    grid = write_grid(tmp_path / "grid.toml", CELLS)
    run = run_headless(
        "self_hosted.py", tmp_path / "run", "-H", target_url, "--grid", str(grid), "--requests-per-user", "3"
    )
    assert_complete_run(run, CELLS, 3, 1, tokens_per_request=client_tokens)
    assert_records_of_the_bundled_server(run, "SelfHostedUser")


def test_jina_api_user_walks_the_grid_on_the_openai_route(tmp_path, target_url):
    with urllib.request.urlopen(f"{target_url}/info", timeout=10) as response:
        model = json.loads(response.read())["model"]
    grid = write_grid(tmp_path / "grid.toml", CELLS)
    run = run_headless(
        "jina_api.py", tmp_path / "run", "-H", target_url, "--model", model, "--grid", str(grid),
        "--requests-per-user", "3",
    )  # fmt: skip
    assert_complete_run(run, CELLS, 3, 1, tokens_per_request=client_tokens)
    assert_records_of_the_bundled_server(run, "JinaApiUser")
