"""``--engine onnx|openvino`` and ``--quantize int8`` on the bundled model: parity with torch, every
batching mode, the export cache and /info."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from target_server import create_app, service_of
from target_server.config import ServerConfig
from target_server.embedder import BUNDLED_MODEL_ID, SentenceTransformerEmbedder
from target_server.models import load_embedder
from tests.support.target import running_target_server
from tests.target_server.conftest import mixed_texts

# Each test exports or loads an ONNX/OpenVINO model: 10-16 s apiece on 2 cores, most of the fast
# tier's time when they ran there. The slow tier (make test) runs them.
pytestmark = pytest.mark.slow

# (engine, quantize) -> the lowest cosine with torch's fp32 vector that any input may have.
PARITY = {
    ("onnx", "none"): 0.999,
    ("openvino", "none"): 0.999,
    ("onnx", "int8"): 0.99,
    ("openvino", "int8"): 0.99,
}


@pytest.fixture(scope="module")
def engine_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("engine-cache"))


@pytest.fixture(scope="module")
def engines(engine_cache):
    """Each (engine, quantize) of PARITY, loaded once per module from a shared export cache."""
    loaded: dict[tuple[str, str], SentenceTransformerEmbedder] = {}

    def get(engine: str, quantize: str) -> SentenceTransformerEmbedder:
        if (engine, quantize) not in loaded:
            config = ServerConfig(
                engine=engine, quantize=quantize, engine_cache=engine_cache, device="cpu", cpu_threads=1
            )
            loaded[(engine, quantize)] = load_embedder(config)
        return loaded[(engine, quantize)]

    return get


@pytest.fixture(scope="module")
def reference(bundled_model):
    """torch's fp32 vectors of mixed-length texts (short, long, over the 256-token limit) in one padded pass."""
    torch_embedder = SentenceTransformerEmbedder(bundled_model, BUNDLED_MODEL_ID)
    texts = mixed_texts(24, seed=7)
    ids = torch_embedder.tokenize(texts)
    return ids, torch_embedder.embed(ids)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize(("engine", "quantize"), list(PARITY))
def test_engine_matches_torch_on_a_padded_batch(engines, reference, engine: str, quantize: str) -> None:
    ids, expected = reference
    embedder = engines(engine, quantize)
    lengths = {len(row) for row in ids}
    assert len(lengths) > 5 and max(lengths) == 256  # a pass of mixed lengths: padding is exercised
    vectors = embedder.embed(ids)
    assert vectors.dtype == np.float32 and vectors.shape == expected.shape
    similarity = cosines(expected, vectors)
    assert similarity.min() >= PARITY[(engine, quantize)], f"min cosine {similarity.min():.5f}"
    info = embedder.info
    assert info.engine == engine and info.quantization == (None if quantize == "none" else quantize)
    assert info.engine_detail and info.device == "cpu" and info.dimensions == 384


@pytest.mark.parametrize(("engine", "quantize"), [("onnx", "none"), ("openvino", "none")])
def test_padding_does_not_change_an_inputs_vector(engines, reference, engine: str, quantize: str) -> None:
    """An input alone and the same input padded in a batch get the same vector: the exported graph
    honours the attention mask (a trace of an unpadded batch could have dropped it)."""
    ids, _ = reference
    embedder = engines(engine, quantize)
    batch = embedder.embed(ids)
    shortest = min(range(len(ids)), key=lambda i: len(ids[i]))
    alone = embedder.embed([ids[shortest]])
    assert cosines(alone, batch[shortest : shortest + 1])[0] >= 0.99999


@pytest.mark.parametrize("mode", ["continuous", "timeout", "none"])
@pytest.mark.parametrize(("engine", "quantize"), [("onnx", "none"), ("onnx", "int8"), ("openvino", "none")])
def test_every_batching_mode_serves_every_engine(
    engines, reference, mode: str, engine: str, quantize: str
) -> None:
    embedder = engines(engine, quantize)
    app = create_app(
        {"batching": mode, "warmup": False, "batch_timeout_s": 0.05, "max_batch_tokens": 1024},
        embedder=embedder,
    )
    try:
        client = app.test_client()
        info = client.get("/info").json
        assert (info["engine"], info["quantization"]) == (engine, None if quantize == "none" else quantize)
        assert info["batching"]["mode"] == mode
        texts = mixed_texts(12, seed=3)
        response = client.post("/embed", json={"texts": texts})
        assert response.status_code == 200
        served = np.array(response.json["embeddings"], dtype=np.float32)
        direct = embedder.embed(embedder.tokenize(texts))
        # Budget-sized passes give the same vectors as one pass; int8 activations are quantized per
        # pass (their scale depends on the pass), so int8 vectors move within its parity bound.
        bound = 0.9999 if quantize == "none" else PARITY[(engine, quantize)]
        assert cosines(direct, served).min() >= bound
    finally:
        service_of(app).close()


def test_exports_are_cached_per_model_engine_and_quantization(engines, engine_cache) -> None:
    from pathlib import Path

    engines("onnx", "int8")
    folders = sorted(p.name for p in Path(engine_cache).iterdir())
    before = {name: (Path(engine_cache) / name / "export.json").read_text() for name in folders}
    assert any("-onnx-none-" in name for name in folders) and any("-onnx-int8-" in name for name in folders)
    reloaded = load_embedder(
        ServerConfig(engine="onnx", quantize="int8", engine_cache=engine_cache, device="cpu", cpu_threads=1)
    )
    after = {p.name: (p / "export.json").read_text() for p in Path(engine_cache).iterdir()}
    assert after == before  # nothing exported again: the same folders, their manifests untouched
    assert str(Path(engine_cache)) in reloaded.info.engine_detail


def test_torch_stays_the_default_engine() -> None:
    config = ServerConfig()
    assert (config.engine, config.quantize) == ("torch", "none")


def test_real_server_names_its_engine(spawn: None, tmp_path) -> None:
    args = ["--engine", "onnx", "--quantize", "int8", "--engine-cache", str(tmp_path), "--no-warmup"]
    with running_target_server(*args, "--cpu-threads", "1", timeout_s=300) as url:
        info = requests.get(url + "/info", timeout=10).json()
        assert (info["engine"], info["quantization"], info["device"]) == ("onnx", "int8", "cpu")
        assert "onnxruntime" in info["engine_detail"]
        response = requests.post(
            url + "/embed", json={"texts": ["an int8 engine", "serves this"]}, timeout=60
        )
        assert response.status_code == 200 and len(response.json()["embeddings"][0]) == 384
