"""Real headless Locust runs against the real bundled target server (all-MiniLM-L6-v2 on CPU)."""

from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.load.runs import assert_complete_run, assert_records_match_stats, run_headless, write_grid

pytestmark = pytest.mark.usefixtures("spawn")

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


class CharacterCountingServer(ThreadingHTTPServer):
    """An OpenAI-compatible embeddings server whose usage counts characters, as Infinity's does by
    default: the server that made a benchmark credit it with 6x the tokens of its peers."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CharacterCountingHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _CharacterCountingHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        texts = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["input"]
        body = json.dumps(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": [0.5] * 8} for i in range(len(texts))
                ],
                "usage": {"prompt_tokens": sum(map(len, texts)), "total_tokens": sum(map(len, texts))},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def character_counting_url():
    server = CharacterCountingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_counting_characters_gets_the_same_tokens_and_a_warning(
    tmp_path, target_url, character_counting_url
):
    """The same grid against the bundled /v1/embeddings and a character-counting server: Locust's CSV
    and the records credit both with the tokens sent; the server's own count is kept aside, and the
    character count is named on the console once per cell."""
    with urllib.request.urlopen(f"{target_url}/info", timeout=10) as response:
        model = json.loads(response.read())["model"]
    cells = [(1, 1, 16), (2, 4, 32)]
    grid = str(write_grid(tmp_path / "grid.toml", cells))
    args = ("--model", model, "--grid", grid, "--requests-per-user", "2", "--warmup-requests", "0")
    runs = {
        name: run_headless("jina_api.py", tmp_path / name, "-H", url, *args)
        for name, url in (("bundled", target_url), ("characters", character_counting_url))
    }
    for run in runs.values():
        assert_complete_run(run, cells, 2, 0, tokens_per_request=client_tokens)
        assert_records_match_stats(run)
    bundled, characters = (runs[name].records() for name in ("bundled", "characters"))
    assert bundled["tokens_client"].tolist() == characters["tokens_client"].tolist()
    assert (bundled["tokens_server"] == bundled["tokens_client"] + 2 * bundled["batch_size"]).all()
    assert (characters["tokens_server"] > 4 * characters["tokens_client"]).all()  # ~7 characters a token
    assert "strays from the client's" not in runs["bundled"].stderr
    warnings = [line for line in runs["characters"].stderr.splitlines() if "strays from the client's" in line]
    assert len(warnings) == len(cells), warnings
    assert all("counts characters" in line for line in warnings), warnings


def scrape(url: str) -> dict[str, float]:
    """The server's /metrics, read with prometheus-client's own parser: sample name -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels or (set(sample.labels) == {"le"} and sample.labels["le"] == "+Inf")
    }


def test_queue_and_inference_time_agree_with_the_servers_own_metrics(tmp_path, target_url):
    """Where the time goes, per request, from the records' timing headers: the server's queue and
    inference time add up to what its own /metrics histogram measured over the same requests, and
    the rest (network, HTTP, client) is positive and small."""
    from reports.metrics.records import time_split

    grid = write_grid(tmp_path / "grid.toml", [(4, 8, 64)])
    before = scrape(target_url)
    run = run_headless("self_hosted.py", tmp_path / "run", "-H", target_url, "--grid", str(grid),
                       "--requests-per-user", "5")  # fmt: skip
    after = scrape(target_url)
    assert_complete_run(run, [(4, 8, 64)], 5, 1, tokens_per_request=client_tokens)
    records = run.records()
    answered = after["embed_request_seconds_count"] - before["embed_request_seconds_count"]
    assert answered == len(records)  # every request, warm-ups included, passed the server's histogram
    server_s = after["embed_request_seconds_sum"] - before["embed_request_seconds_sum"]
    headers_s = float((records["queue_ms"] + records["inference_ms"]).sum()) / 1e3
    # The histogram times admission to answer, the headers admission to the last result: the same
    # span but for a few microseconds of bookkeeping per request.
    assert headers_s <= server_s + 1e-3 and headers_s == pytest.approx(
        server_s, rel=0.02, abs=0.01 * answered
    )
    rest_ms = records["latency_ms"] - records["server_total_ms"]
    assert (rest_ms > 0).all(), rest_ms.min()
    split = time_split(records[records["warmup"] == 0])
    assert split is not None and split.requests == 20
    assert (
        0 < split.mean_rest_ms < 0.25 * (split.mean_queue_ms + split.mean_inference_ms + split.mean_rest_ms)
    )
