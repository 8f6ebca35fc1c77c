"""Model loading (local path, dtype) and tokenization of the embedder, on the bundled model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from target_server.config import ServerConfig
from target_server.embedder import (
    BUNDLED_MODEL_ID,
    InputTooLong,
    SentenceTransformerEmbedder,
    bundled_model_path,
    is_out_of_memory,
    resolve_dtype,
)
from target_server.models import load_embedder


def test_loads_a_local_path_and_names_it_after_the_directory() -> None:
    embedder = load_embedder(ServerConfig(model=bundled_model_path(), device="cpu"))
    assert embedder.info.name == "model" and embedder.info.dimensions == 384
    assert embedder.info.dtype == "float32" and embedder.info.device == "cpu"


def test_bfloat16_weights_give_close_vectors(bundled_model) -> None:
    embedder = load_embedder(ServerConfig(device="cpu", dtype="bfloat16"))
    assert embedder.info.dtype == "bfloat16" and embedder.info.name == BUNDLED_MODEL_ID
    texts = ["a sentence about latency", "another one about cost per million tokens"]
    got = embedder.embed(embedder.tokenize(texts))
    want = bundled_model.encode(texts)
    cosine = np.sum(got * want, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cosine.min() > 0.99


def test_auto_dtype_is_float32_on_cpu() -> None:
    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("float16", "cpu") is torch.float16


def test_cuda_requested_without_a_gpu_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="torch sees no CUDA device"):
        load_embedder(ServerConfig(device="cuda"))


def test_tokenize_matches_the_hf_tokenizer_and_truncates(bundled_model) -> None:
    embedder = SentenceTransformerEmbedder(bundled_model, BUNDLED_MODEL_ID)
    texts = ["short text", "word " * 600, "naïve café — ünïcödé"]
    want = bundled_model.tokenizer(texts, truncation=True, max_length=256)["input_ids"]
    assert embedder.tokenize(texts) == want
    with pytest.raises(InputTooLong) as error:
        embedder.tokenize(texts, truncate=False)
    assert (error.value.index, error.value.tokens, error.value.limit) == (1, 602, 256)


def test_out_of_memory_recognition() -> None:
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))
