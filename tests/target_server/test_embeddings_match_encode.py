"""The server returns what SentenceTransformer.encode returns, in every mode, under concurrency."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from tests.support.target import running_target_server
from tests.target_server.conftest import mixed_texts

pytestmark = pytest.mark.usefixtures("spawn")


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def expected_tokens(model, texts: list[str]) -> int:
    encoded = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]
    return sum(len(ids) for ids in encoded)


def post(url: str, path: str, texts: list[str]) -> tuple[np.ndarray, int, dict]:
    if path == "/embed":
        response = requests.post(url + path, json={"texts": texts}, timeout=120)
        assert response.status_code == 200, response.text
        body = response.json()
        return np.array(body["embeddings"]), body["usage"]["total_tokens"], dict(response.headers)
    response = requests.post(url + path, json={"input": texts, "model": "any"}, timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["index"] for item in body["data"]] == list(range(len(texts)))
    return (
        np.array([item["embedding"] for item in body["data"]]),
        body["usage"]["total_tokens"],
        dict(response.headers),
    )


# 16 requests of 1..8 texts of 1..300 words (up to the model's 256-token limit), both endpoints,
# 8 in flight at once: enough to batch requests together in every mode, at a third of the CPU
# time of 24 requests of 1..12 texts (the suite's slowest tests on two cores).
REQUESTS_TEXTS = [mixed_texts(1 + i % 8, seed=i, max_words=300) for i in range(16)]


@pytest.fixture(scope="module")
def reference(bundled_model) -> dict[int, np.ndarray]:
    """What ``encode`` returns for each request, computed once for the three modes (12 s of a core)."""
    return {i: bundled_model.encode(texts) for i, texts in enumerate(REQUESTS_TEXTS)}


@pytest.mark.parametrize("mode", ["continuous", "timeout", "none"])
def test_concurrent_mixed_requests_match_encode(bundled_model, reference, mode: str) -> None:
    args = ["--batching", mode, "--max-batch-tokens", "2048", "--threads", "16"]
    if mode == "timeout":
        args += ["--batch-timeout", "0.3"]
    with running_target_server(*args) as url, ThreadPoolExecutor(8) as pool:
        futures = {
            i: pool.submit(post, url, "/embed" if i % 2 else "/v1/embeddings", texts)
            for i, texts in enumerate(REQUESTS_TEXTS)
        }
        results = {i: future.result() for i, future in futures.items()}
    for i, (vectors, tokens, headers) in results.items():
        texts = REQUESTS_TEXTS[i]
        assert vectors.shape == (len(texts), 384)
        assert cosine_rows(vectors, reference[i]).min() >= 0.9999, f"request {i} differs from encode"
        assert tokens == expected_tokens(bundled_model, texts)
        assert int(headers["x-compute-tokens"]) == tokens
        for name in ("x-queue-time", "x-inference-time", "x-total-time"):
            assert float(headers[name]) >= 0
