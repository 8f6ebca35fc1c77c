"""The server's warm-up settles the latency of common shapes before it reports ready, and
``--cpu-threads`` sets torch's intra-op threads (what ``/info`` reports)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from target_server.batching.base import SETTLE_MAX_PASSES, settled
from target_server.config import ConfigError, ServerConfig


def test_passes_repeat_until_the_last_three_agree() -> None:
    """A cold CPU server: 549 ms, then faster, then steady around 32 ms."""
    durations = iter([0.549, 0.210, 0.080, 0.034, 0.032, 0.033, 0.032])
    times, steady = settled(lambda: next(durations), deadline=float("inf"))
    assert steady and [round(t * 1000) for t in times] == [549, 210, 80, 34, 32, 33]


def test_a_latency_that_never_settles_stops_at_the_deadline_or_the_pass_limit() -> None:
    clock = iter(range(100))
    swinging = iter([0.1, 0.5] * 100)
    times, steady = settled(lambda: next(swinging), deadline=5, clock=lambda: next(clock))
    assert not steady and len(times) == 6  # the clock passed the deadline after the sixth pass
    swinging = iter([0.1, 0.5] * 100)
    times, steady = settled(lambda: next(swinging), deadline=float("inf"))
    assert not steady and len(times) == SETTLE_MAX_PASSES


def test_bad_thread_counts_and_warmup_bounds_are_refused() -> None:
    with pytest.raises(ConfigError, match="cpu_threads"):
        ServerConfig(cpu_threads=-1).validate()
    with pytest.raises(ConfigError, match="warmup_seconds"):
        ServerConfig(warmup_seconds=-5).validate()
    ServerConfig(cpu_threads=2, warmup_seconds=0).validate()


def test_embedder_offers_settling_batches_within_the_budget(bundled_model) -> None:
    from target_server.embedder import BUNDLED_MODEL_ID, SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(bundled_model, BUNDLED_MODEL_ID)
    batches = dict(embedder.settle_batches(4096))
    assert list(batches) == ["b=1 t=128", "b=8 t=128"]  # 512 > MiniLM's 256-token limit
    assert [len(batches["b=8 t=128"]), len(batches["b=8 t=128"][0])] == [8, 128]
    assert list(dict(embedder.settle_batches(512))) == ["b=1 t=128"]


@pytest.mark.usefixtures("spawn")
def test_serve_with_cpu_threads_warms_up_until_the_latency_settles(tmp_path: Path) -> None:
    from tests.support.target import running_target_server

    log = tmp_path / "server.log"
    with (
        running_target_server(
            "--cpu-threads", "2", "--warmup-seconds", "60", log_path=log, env={"EMBED_BENCH_WARMUP": "true"}
        ) as url,  # fmt: skip
        urllib.request.urlopen(f"{url}/info", timeout=10) as response,
    ):
        info = json.loads(response.read())
    assert info["hardware"]["torch_threads"] == 2
    text = log.read_text()
    assert "torch intra-op threads: 2 (--cpu-threads)" in text
    lines = [line for line in text.splitlines() if "warm-up b=" in line]
    assert [line.split("warm-up ")[1].split(":")[0] for line in lines] == ["b=1 t=128", "b=8 t=128"]
    for line in lines:
        assert "first " in line and "last " in line and "pass(es)" in line
    print("\n".join(lines))
