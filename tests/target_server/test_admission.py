"""Admission control under a burst: only 200s and 429s with Retry-After, no 5xx, healthy afterwards."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.target import running_target_server
from tests.target_server.conftest import mixed_texts, sample, scrape

pytestmark = pytest.mark.usefixtures("spawn")


def test_200_concurrent_requests_against_a_small_admission_limit() -> None:
    texts = mixed_texts(8, seed=1, max_words=40)
    with running_target_server(
        "--max-queue-tokens", "1500", "--threads", "64", "--max-batch-tokens", "1024"
    ) as url:

        def send(_: int) -> requests.Response:
            return requests.post(url + "/embed", json={"texts": texts}, timeout=120)

        with ThreadPoolExecutor(200) as pool:
            responses = list(pool.map(send, range(200)))
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 429}, sorted(set(statuses))
        assert statuses.count(200) > 0 and statuses.count(429) > 0
        for response in responses:
            if response.status_code == 429:
                assert int(response.headers["Retry-After"]) >= 1
                assert response.json()["error_type"] == "overloaded"
            else:
                assert len(response.json()["embeddings"]) == 8
        assert requests.get(url + "/health", timeout=10).status_code == 200
        metrics = scrape(requests.get(url + "/metrics", timeout=10).text)
        assert sample(metrics, "embed_admission_rejections_total") == statuses.count(429)
        assert requests.post(url + "/embed", json={"texts": texts}, timeout=60).status_code == 200
