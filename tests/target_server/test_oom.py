"""Out-of-memory recovery: split and retry, fail only a lone input that cannot fit, never hang."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.target_server.conftest import mixed_texts, sample, scrape

MODES = ["continuous", "timeout", "none"]


@pytest.mark.parametrize("mode", MODES)
def test_oom_splits_batches_and_every_request_succeeds(make_app, bundled_model, mode: str) -> None:
    # Forward passes over 600 padded tokens "run out of memory"; the budget allows 4096.
    app = make_app(batching=mode, max_batch_tokens=4096, batch_timeout_s=0.05, oom_above_padded_tokens=600)
    bodies = [{"texts": mixed_texts(8, seed=i, max_words=60)} for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda body: app.test_client().post("/embed", json=body), bodies))
    for body, response in zip(bodies, responses, strict=True):
        assert response.status_code == 200, response.json
        got = np.array(response.json["embeddings"])
        want = bundled_model.encode(body["texts"])
        assert np.allclose(got, want, atol=1e-4)
    metrics = scrape(app.test_client().get("/metrics").text)
    assert sample(metrics, "embed_oom_splits_total") > 0
    assert sample(metrics, "embed_oom_failures_total") == 0
    assert app.test_client().get("/health").status_code == 200


@pytest.mark.parametrize("mode", MODES)
def test_input_that_never_fits_gets_a_json_error_and_others_succeed(make_app, mode: str) -> None:
    app = make_app(batching=mode, max_batch_tokens=4096, batch_timeout_s=0.05, oom_above_padded_tokens=64)
    client = app.test_client()
    too_big = " ".join(["memory"] * 100)  # 102 tokens: over the injected limit even alone
    with ThreadPoolExecutor(2) as pool:
        failing = pool.submit(client.post, "/embed", json={"texts": ["short", too_big, "also short"]})
        fine = pool.submit(client.post, "/embed", json={"texts": ["short one", "another"]})
        failing, fine = failing.result(timeout=60), fine.result(timeout=60)
    assert failing.status_code == 413
    assert failing.json["error_type"] == "input_too_large_for_device"
    assert "102 tokens" in failing.json["error"]
    assert fine.status_code == 200
    assert client.get("/health").status_code == 200
    assert client.post("/embed", json={"texts": ["after the failure"]}).status_code == 200
    assert sample(scrape(client.get("/metrics").text), "embed_oom_failures_total") == 1
