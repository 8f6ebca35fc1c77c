"""``benchmarks/http_load.py`` and the peer comparison of ``benchmarks/engines.py``: tokens counted by
the client equal what the real server reports, an answer without one embedding per input is a
failure, and our best engine is set against each peer cell by cell."""

from __future__ import annotations

import json

import pytest
import requests

from embed_bench.core.payloads import PassageFactory
from target_server.launcher import running_target_server
from tests.benchmarks.scripts import load_script

http_load = load_script("http_load")
engines = load_script("engines")
infinity_peer = load_script("infinity_peer")


def test_openai_bodies_and_their_vectors_in_input_order() -> None:
    route = http_load.Route("/embeddings", "minilm")
    (body,) = http_load.encode_bodies(["a", "b", "c"], 3, route)
    assert json.loads(body) == {"input": ["a", "b", "c"], "model": "minilm"}
    answer = {"data": [{"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": [1.0]}]}
    assert route.vectors(answer) == [[1.0], [2.0]]
    assert json.loads(http_load.encode_bodies(["a", "b", "c"], 2)[0]) == {"texts": ["a", "b"]}  # tail dropped


@pytest.mark.usefixtures("spawn")
def test_client_counted_tokens_match_the_servers_usage_and_a_short_answer_fails() -> None:
    factory = PassageFactory("", seed=3)
    texts = factory.passages_of([5, 17, 40, 9], stream="http-load-test")
    route = http_load.Route("/embeddings", "minilm")
    bodies = http_load.encode_bodies(texts, 2, route)
    counted = engines.token_counts(factory, texts, 2)
    with running_target_server("--model", "null:8", "--no-warmup") as url:
        usage = [
            requests.post(
                url + route.path, data=body, headers={"Content-Type": "application/json"}, timeout=30
            ).json()["usage"]["total_tokens"]
            for body in bodies
        ]
        assert counted.tokens == usage and counted.rows == [2, 2]

        # One connection sends body 0, 1, 0, 1, ...: every answer counts its body's tokens.
        totals = http_load.run_load(url, bodies, 1, 1.0, 1, path=route.path, counted=counted)
        assert totals.requests > 1 and totals.failures == 0
        assert totals.tokens == sum(usage[n % 2] for n in range(totals.requests))

        # An answer must hold one embedding per input: expecting three, every request fails.
        wrong = http_load.Counted(rows=[3, 3], tokens=counted.tokens)
        failed = http_load.run_load(url, bodies, 1, 0.5, 1, path=route.path, counted=wrong)
        assert failed.requests > 0 and failed.failures == failed.requests and failed.tokens == 0


def result(label: str, b1: float, b32: float, p50: float) -> object:
    return engines.EngineResult(label, 1.0, 1.0, 1.0, p50, {"b=1": b1, "b=32": b32}, 0)


def test_the_best_engine_is_one_engine_for_all_cells_and_each_peer_gets_its_ratios() -> None:
    ours = [
        result("torch", 1000, 2000, 90),
        result("onnx", 1800, 1900, 60),
        result("openvino", 2500, 1200, 55),
    ]
    peers = [result("infinity-torch", 900, 2100, 100), result("infinity-optimum", 2000, 2000, 50)]
    ratios = engines.peer_ratios(ours, peers, ["b=1", "b=32"])
    # Geometric means: torch 1414, onnx 1849, openvino 1732: onnx, though openvino wins b=1.
    assert ratios["ours_best"] == "onnx"
    torch_peer = ratios["peers"]["infinity-torch"]
    assert torch_peer["tokens_per_s_ratio"] == pytest.approx({"b=1": 2.0, "b=32": 1900 / 2100})
    assert torch_peer["geometric_mean_ratio"] == pytest.approx((2.0 * 1900 / 2100) ** 0.5)
    assert ratios["peers"]["infinity-optimum"]["b1_c1_p50_ratio"] == pytest.approx(1.2)
    table = engines.against_peers(ours, peers, ["b=1", "b=32"])
    assert "| infinity-torch | 2.00x | 0.90x | 1.35x | 0.60x |" in table


def test_peer_engines_are_parsed_and_an_unknown_one_is_refused() -> None:
    specs = infinity_peer.parse_peers("torch, optimum,optimum:int8")
    assert [spec.label for spec in specs] == ["infinity-torch", "infinity-optimum", "infinity-optimum-int8"]
    for bad in ("openvino", "torch:int8", "optimum:fp8"):
        with pytest.raises(SystemExit, match="unknown Infinity engine"):
            infinity_peer.parse_peers(bad)
