"""Synthetic shapes (``synthetic:NAME``) and the null model (``null:WIDTH``): sizes, output, /info."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import requests

from target_server import create_app, service_of
from target_server.config import ServerConfig
from target_server.models import load_embedder
from target_server.null_model import NullEmbedder, parse_width
from target_server.synthetic import SHAPES
from tests.support.target import running_target_server

# XLM-RoBERTa large with 8,194 positions and its pooler, as transformers builds it.
JINA_V3_PARAMETERS = 567_754_752
# BAAI/bge-small-en-v1.5 as published: 33.4M.
BGE_SMALL_PARAMETERS = 33_360_000


def test_jina_v3_shape_has_the_real_layer_sizes() -> None:
    shape = SHAPES["jina-embeddings-v3"]
    # 24 x (4 x 1024^2 attention + 2 x 1024 x 4096 FFN + biases and norms): the per-token weights.
    assert shape.layer_parameters() == 302_309_376
    assert shape.forward_flops_per_token(512) == 2 * 302_309_376 + 4 * 24 * 512 * 1024


def test_attention_flops_count_both_products_against_every_position() -> None:
    """Bidirectional attention: per token and layer, QK^T and AV against all t positions, 2 x t x
    hidden multiply-adds = 4 x t x hidden FLOPs; at t=8192 the decoder's 2 x L x t x d count gave
    71% of it (MFU understated by 29%)."""
    shape = SHAPES["jina-embeddings-v3"]
    dense = 2 * shape.layer_parameters()
    for tokens in (1, 512, 8192):
        assert shape.forward_flops_per_token(tokens) - dense == 2 * 2 * shape.layers * tokens * shape.hidden
    decoder_count = dense + 2 * shape.layers * 8192 * shape.hidden
    assert decoder_count / shape.forward_flops_per_token(8192) == pytest.approx(0.714, abs=0.001)


def test_bge_small_builds_serves_and_says_it_is_synthetic() -> None:
    embedder = load_embedder(ServerConfig(model="synthetic:bge-small", device="cpu"))
    info = embedder.info
    assert (info.dimensions, info.max_input_tokens, info.parameters) == (384, 512, BGE_SMALL_PARAMETERS)
    assert info.synthetic and "mean nothing" in info.note
    app = create_app({"warmup": False}, embedder=embedder)
    try:
        client = app.test_client()
        body = client.get("/info").json
        assert body["model"] == "synthetic:bge-small" and body["synthetic"] is True
        assert "random weights" in body["note"] and body["parameters"] == BGE_SMALL_PARAMETERS
        vectors = np.array(client.post("/embed", json={"texts": ["a", "b c d " * 300]}).json["embeddings"])
        assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
        assert not np.allclose(vectors[0], vectors[1])
    finally:
        service_of(app).close()


def test_unknown_synthetic_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: jina-embeddings-v3, bge-small"):
        load_embedder(ServerConfig(model="synthetic:gpt-7", device="cpu"))


def test_null_model_width_spec() -> None:
    assert parse_width("null") == 1024 and parse_width("null:384") == 384
    for bad in ("null:", "null:0", "null:x", "nil:8"):
        with pytest.raises(ValueError, match="'null' or 'null:WIDTH'"):
            parse_width(bad)


def test_null_model_answers_fixed_unit_vectors_of_its_width() -> None:
    app = create_app({"warmup": False}, embedder=NullEmbedder(width=16))
    try:
        client = app.test_client()
        info = client.get("/info").json
        assert (info["model"], info["dimensions"], info["parameters"], info["synthetic"]) == (
            "null:16",
            16,
            0,
            True,
        )
        body = client.post("/embed", json={"texts": ["one", "two", "three"]}).json
        vectors = np.array(body["embeddings"], dtype=np.float32)
        assert vectors.shape == (3, 16) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-6)
        assert body["usage"]["total_tokens"] == 9  # tokenized for real: [CLS] word [SEP]
    finally:
        service_of(app).close()


@pytest.mark.usefixtures("spawn")
def test_synthetic_jina_v3_serves_on_cpu() -> None:
    # No warm-up: a full 8,192-token pass of a 570M model takes minutes on two cores.
    args = ["--model", "synthetic:jina-embeddings-v3", "--device", "cpu", "--no-warmup"]
    with running_target_server(*args, "--max-batch-tokens", "512", "--threads", "4", timeout_s=300) as url:
        info = requests.get(url + "/info", timeout=10).json()
        assert (info["dimensions"], info["max_input_tokens"], info["dtype"]) == (1024, 8192, "float32")
        assert info["synthetic"] is True and info["parameters"] == JINA_V3_PARAMETERS
        assert "jina-embeddings-v3" in info["note"] and "mean nothing" in info["note"]
        texts = ["a short query", "a somewhat longer passage about serving costs " * 4]
        response = requests.post(url + "/embed", json={"texts": texts}, timeout=120)
        assert response.status_code == 200, response.text
        vectors = np.array(response.json()["embeddings"])
        assert vectors.shape == (2, 1024) and np.isfinite(vectors).all()
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)  # Normalize() is part of it
        encoded = requests.post(
            url + "/v1/embeddings", json={"input": texts[0], "encoding_format": "base64"}, timeout=120
        ).json()["data"][0]["embedding"]
        assert np.allclose(np.frombuffer(base64.b64decode(encoded), dtype="<f4"), vectors[0], atol=1e-6)
