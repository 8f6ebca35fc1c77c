"""Real headless Locust runs against the real bundled target server (all-MiniLM-L6-v2 on CPU)."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.locustfiles.runs import assert_complete_run, run_headless, write_grid

pytestmark = pytest.mark.slow

# (concurrency, batch size, passage tokens); MiniLM truncates at 256 tokens including [CLS] and [SEP].
CELLS = [(1, 2, 16), (3, 4, 64), (2, 2, 512)]


def server_tokens(batch: int, tokens: int) -> int:
    """What the server reports: every token it embedded, specials included, after truncation."""
    return batch * min(tokens + 2, 256)


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
    assert_complete_run(run, CELLS, 3, 1, tokens_per_request=server_tokens)


def test_jina_api_user_walks_the_grid_on_the_openai_route(tmp_path, target_url):
    with urllib.request.urlopen(f"{target_url}/info", timeout=10) as response:
        model = json.loads(response.read())["model"]
    grid = write_grid(tmp_path / "grid.toml", CELLS)
    run = run_headless(
        "jina_api.py", tmp_path / "run", "-H", target_url, "--model", model, "--grid", str(grid),
        "--requests-per-user", "3",
    )  # fmt: skip
    assert_complete_run(run, CELLS, 3, 1, tokens_per_request=server_tokens)
