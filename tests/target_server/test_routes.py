"""The HTTP contract: /info, /metrics, /health readiness, and the OpenAI/Jina request options."""

from __future__ import annotations

import base64
import os
import threading
import time

import numpy as np

from target_server import create_app, service_of
from target_server.hardware import cpu_model
from tests.target_server.conftest import sample, scrape

# Every family /metrics exports, with its type (README's /metrics table lists the same).
METRIC_TYPES = {
    "embed_requests": "counter",
    "embed_inputs": "counter",
    "embed_tokens": "counter",
    "embed_admission_rejections": "counter",
    "embed_oom_splits": "counter",
    "embed_oom_failures": "counter",
    "embed_batch_size": "histogram",
    "embed_batch_padded_tokens": "histogram",
    "embed_batch_tokens": "histogram",
    "embed_batch_requests": "histogram",
    "embed_batch_seconds": "histogram",
    "embed_request_seconds": "histogram",
    "embed_in_flight_tokens": "gauge",
    "embed_queue_depth": "gauge",
    "embed_requests_in_flight": "gauge",
    "embed_queue_requests": "gauge",
    "embed_queue_tokens": "gauge",
    "embed_pass_cost_tokens": "gauge",
    # prometheus-client's ProcessCollector (the process's CPU and memory)
    "process_virtual_memory_bytes": "gauge",
    "process_resident_memory_bytes": "gauge",
    "process_start_time_seconds": "gauge",
    "process_cpu_seconds": "counter",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
}


def test_info_describes_model_and_batching(make_app) -> None:
    info = make_app(batching="timeout", batch_timeout_s=0.5).test_client().get("/info").json
    assert info["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert (info["dimensions"], info["max_input_tokens"], info["device"]) == (384, 256, "cpu")
    assert info["batching"] == {
        "mode": "timeout",
        "max_batch_tokens": 8192,
        "batch_timeout_s": 0.5,
        "max_queue_tokens": 16777216,
    }
    hardware = info["hardware"]  # what run.json records, and what a price is matched against
    assert (hardware["device"], hardware["gpu"], hardware["gpus"]) == ("cpu", None, 0)
    assert hardware["cpus"] == len(os.sched_getaffinity(0)) and hardware["torch_threads"] >= 1
    assert hardware["cpu"] == cpu_model() and hardware["cpu"] != "unknown"


def test_cpu_model_reads_the_model_name_line(tmp_path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8375C\n"
    )
    assert cpu_model(cpuinfo) == "Intel(R) Xeon(R) Platinum 8375C"
    assert cpu_model(tmp_path / "missing") not in ("", None)


def test_metrics_is_prometheus_text_that_counts_work(make_app) -> None:
    client = make_app().test_client()
    client.post("/embed", json={"texts": ["one", "two", "three"]})
    response = client.get("/metrics")
    assert response.mimetype == "text/plain"
    metrics = scrape(response.text)
    assert sample(metrics, "embed_requests_total", endpoint="embed", status="200") == 1
    assert sample(metrics, "embed_inputs_total") == 3
    assert sample(metrics, "embed_tokens_total") == 9  # [CLS] word [SEP] x 3
    assert sample(metrics, "embed_queue_depth") == 0 and sample(metrics, "embed_in_flight_tokens") == 0
    batches = sample(metrics, "embed_batch_size_count")
    assert batches >= 1 and sample(metrics, "embed_batch_size_bucket", le="+Inf") == batches
    assert {name: family.type for name, family in metrics.items()} == METRIC_TYPES


def test_two_apps_in_one_process_count_separately(make_app) -> None:
    first, second = make_app().test_client(), make_app().test_client()
    first.post("/embed", json={"texts": ["one"]})
    assert sample(scrape(first.get("/metrics").text), "embed_inputs_total") == 1
    assert sample(scrape(second.get("/metrics").text), "embed_inputs_total") == 0


def test_health_and_requests_are_503_until_the_model_is_loaded(bundled_model, monkeypatch) -> None:
    from target_server import service as service_module
    from target_server.embedder import BUNDLED_MODEL_ID, SentenceTransformerEmbedder

    release = threading.Event()

    def slow_load(config):
        release.wait(30)
        return SentenceTransformerEmbedder(bundled_model, BUNDLED_MODEL_ID)

    monkeypatch.setattr(service_module, "load_embedder", slow_load)
    app = create_app({"load_in_background": True, "warmup": True, "max_batch_tokens": 2048})
    client = app.test_client()
    loading = client.get("/health")
    assert loading.status_code == 503 and loading.json["status"] == "loading"
    refused = client.post("/embed", json={"texts": ["x"]})
    assert refused.status_code == 503 and refused.json["error_type"] == "not_ready"
    assert refused.headers["Retry-After"]
    refused = client.post("/v1/embeddings", json={"input": ["x"], "dimensions": 8})
    assert refused.status_code == 503 and refused.json["error_type"] == "not_ready"
    release.set()
    service = service_of(app)
    assert service.wait_ready(60)
    assert client.get("/health").json == {"status": "ok"}
    assert client.post("/embed", json={"texts": ["x"]}).status_code == 200
    service.close()


def test_failed_model_load_is_reported_on_health(monkeypatch) -> None:
    from target_server import service as service_module

    def broken_load(config):
        raise OSError("no such model: nowhere/nothing")

    monkeypatch.setattr(service_module, "load_embedder", broken_load)
    app = create_app({"load_in_background": True})
    client = app.test_client()
    for _ in range(100):
        body = client.get("/health").json
        if body["status"] != "loading":
            break
        time.sleep(0.05)
    assert client.get("/health").status_code == 503
    assert "no such model" in client.get("/health").json["status"]


def test_openai_shape_input_forms_and_order(make_app, bundled_model) -> None:
    client = make_app().test_client()
    texts = ["first text", "second, longer text about embeddings", "third"]
    for payload in (texts, [{"text": t} for t in texts]):
        body = client.post("/v1/embeddings", json={"model": "m", "input": payload}).json
        assert body["object"] == "list" and [d["index"] for d in body["data"]] == [0, 1, 2]
        assert np.allclose([d["embedding"] for d in body["data"]], bundled_model.encode(texts), atol=1e-5)
    single = client.post("/v1/embeddings", json={"input": "first text"}).json
    assert len(single["data"]) == 1 and single["usage"]["total_tokens"] == 4


def test_dimensions_truncate_and_renormalize(make_app, bundled_model) -> None:
    client = make_app().test_client()
    body = client.post("/v1/embeddings", json={"input": ["some text"], "dimensions": 64}).json
    # JSON has one number type: 64.0 is 64 (found by schemathesis).
    assert client.post("/v1/embeddings", json={"input": ["some text"], "dimensions": 64.0}).json == body
    vector = np.array(body["data"][0]["embedding"])
    full = bundled_model.encode(["some text"])[0]
    assert vector.shape == (64,) and abs(np.linalg.norm(vector) - 1) < 1e-5
    assert np.allclose(vector, full[:64] / np.linalg.norm(full[:64]), atol=1e-5)


def test_base64_encoding_is_little_endian_float32(make_app) -> None:
    client = make_app().test_client()
    floats = client.post("/v1/embeddings", json={"input": ["x y z"]}).json["data"][0]["embedding"]
    encoded = client.post("/v1/embeddings", json={"input": ["x y z"], "encoding_format": "base64"}).json
    decoded = np.frombuffer(base64.b64decode(encoded["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, floats, atol=1e-7)


def test_bad_openai_options_are_400(make_app) -> None:
    client = make_app().test_client()
    for body in (
        {"input": ["x"], "dimensions": 0},
        {"input": ["x"], "dimensions": 385},
        {"input": ["x"], "dimensions": True},
        {"input": ["x"], "encoding_format": "binary"},
        {"input": ["x"], "encoding_format": "float", "embedding_type": "binary"},  # found by schemathesis
        {"input": ["x"], "dimensions": 8.5},
        {"input": ["x"], "model": 3},
        {"input": ["x"], "normalized": "yes"},
    ):
        response = client.post("/v1/embeddings", json=body)
        assert response.status_code == 400, body
        assert response.json["error_type"] == "invalid_request"


def test_truncation_reports_tokens_actually_embedded(make_app) -> None:
    client = make_app().test_client()
    long_text = "word " * 1000
    body = client.post("/embed", json={"texts": [long_text, "short"]}).json
    assert body["usage"]["total_tokens"] == 256 + 3
    refused = client.post("/embed", json={"texts": ["short", long_text], "truncate": False})
    assert refused.status_code == 422
    assert "input 1 has 1002 tokens" in refused.json["error"]


def test_a_task_on_a_plain_model_is_ignored_and_does_not_split_batches(make_app, bundled_model) -> None:
    client = make_app().test_client()
    body = client.post("/v1/embeddings", json={"input": ["some text"], "task": "retrieval.passage"}).json
    assert np.allclose(body["data"][0]["embedding"], bundled_model.encode(["some text"])[0], atol=1e-5)
