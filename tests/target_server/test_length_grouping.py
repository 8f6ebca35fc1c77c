"""A continuous pass groups inputs of like lengths within its token budget: the cut that ends a pass
before a much longer input when its padding would cost more than another pass, the measured price
of a pass, and the real batcher doing it with the real model."""

from __future__ import annotations

import math
import threading
import time

import numpy as np

from target_server import service_of
from target_server.batching import cut_batches
from target_server.batching.base import Job
from target_server.batching.pass_cost import PassCost, fixed_cost_tokens
from tests.target_server.test_batching import post_many


def entries_of(lengths: list[int]):
    return Job(ids=[[1] * n for n in lengths], task=None, tokens=sum(lengths)).entries()


def lengths_of(batches) -> list[list[int]]:
    return [[entry.length for entry in batch] for batch in batches]


def test_a_pass_ends_before_an_input_whose_padding_costs_more_than_a_pass() -> None:
    mixed = [7] * 6 + [250] * 2  # fits one 4096-token pass: 8 x 250 = 2000 padded for 542 real
    assert lengths_of(cut_batches(entries_of(mixed), 4096)) == [mixed]  # no price known: one pass
    # Padding the six short rows to 250 costs (250 - 7) x 6 = 1458 tokens: more than a 100-token pass.
    assert lengths_of(cut_batches(entries_of(mixed), 4096, split_cost_tokens=100)) == [[7] * 6, [250] * 2]
    # ... less than a pass that costs as much as 2000 tokens: one pass stays cheaper.
    assert lengths_of(cut_batches(entries_of(mixed), 4096, split_cost_tokens=2000)) == [mixed]
    # The budget still bounds every pass.
    for batch in cut_batches(entries_of([7] * 40 + [250] * 30), 1024, split_cost_tokens=100):
        assert max(e.length for e in batch) * len(batch) <= 1024


def test_pass_cost_is_the_fixed_time_of_a_pass_in_tokens() -> None:
    fixed, per_token = 0.004, 2e-5  # 4 ms a pass, 20 us a token: a pass costs 200 tokens
    passes = [(n, fixed + per_token * n) for n in (64, 128, 512, 1024, 4096)]
    assert math.isclose(fixed_cost_tokens(passes), 200, rel_tol=1e-6)
    assert fixed_cost_tokens(passes[:3]) is None  # too few passes
    assert fixed_cost_tokens([(512, 0.01)] * 10) is None  # all one size: no slope
    cost = PassCost()
    assert cost.tokens() == math.inf  # until measured: no pass is split for padding
    for tokens, seconds in passes:
        cost.observe(tokens, seconds)
    assert math.isclose(cost.tokens(), 200, rel_tol=1e-6)
    for _ in range(200):  # a run of like passes cannot be fitted: the last fit stands
        cost.observe(512, fixed + per_token * 512)
    assert math.isclose(cost.tokens(), 200, rel_tol=1e-6)


def test_continuous_pass_of_mixed_lengths_pads_less(make_app) -> None:
    """The real batcher and model: once the price of a pass is measured (from real passes of several
    sizes, as the warm-up's), queued short and long inputs run as separate passes."""
    app = make_app(batching="continuous", max_batch_tokens=4096)
    service = service_of(app)
    batcher, embedder = service.batcher, service.embedder
    ids = embedder.tokenize(["pass cost " * 200])[0]
    for rows, tokens in [(1, 16), (1, 64), (1, 256), (4, 256), (8, 128), (1, 16), (2, 256)]:
        batcher.execute([Job(ids=[ids[:tokens]] * rows, task=None, tokens=rows * tokens).entries()])
    price = batcher.pass_cost.tokens()
    assert 0 <= price < 1000, price  # a pass of MiniLM on a CPU costs a few ms: tens of tokens

    passes: list[list[int]] = []
    lock = threading.Lock()
    inner = embedder.embed

    def record(batch, task=None):
        with lock:
            passes.append([len(row) for row in batch])
            first = len(passes) == 1
        if first:
            time.sleep(0.5)  # the device is busy: the other requests queue up behind it
        return inner(batch, task)

    embedder.embed = record
    client = app.test_client()
    busy = threading.Thread(target=lambda: client.post("/embed", json={"texts": ["first"]}))
    busy.start()
    while not passes:
        time.sleep(0.01)
    short, long = "short query", " ".join(["passage"] * 248)  # 4 and 250 tokens
    responses = post_many(client, [{"texts": [t]} for t in [short] * 6 + [long] * 2], 8)
    busy.join()
    assert all(r.status_code == 200 for r in responses)
    queued = passes[1:]
    assert sorted(n for p in queued for n in p) == [4] * 6 + [250] * 2, passes
    assert [4] * 6 in queued and [250, 250] in queued, passes  # like lengths together, apart from the rest
    padded = sum(max(p) * len(p) for p in queued)
    assert padded == 6 * 4 + 2 * 250  # no padding at all, where one pass would have padded 8 x 250

    vectors = np.array([r.json["embeddings"][0] for r in responses], dtype=np.float32)
    direct = inner(embedder.tokenize([short, long]))
    assert np.allclose(vectors[0], direct[0], atol=1e-5) and np.allclose(vectors[-1], direct[1], atol=1e-5)
