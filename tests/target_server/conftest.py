"""Apps built around the shared bundled model, so each test pays for Flask, not for loading torch weights."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from target_server import create_app, service_of
from target_server.embedder import BUNDLED_MODEL_ID, SentenceTransformerEmbedder

WORDS = [
    "embedding",
    "vector",
    "passage",
    "token",
    "latency",
    "throughput",
    "batch",
    "server",
    "model",
    "query",
    "cost",
    "gpu",
    "memory",
    "request",
    "response",
    "locust",
    "benchmark",
    "sagemaker",
    "tokenizer",
    "attention",
    "transformer",
    "sentence",
]


def mixed_texts(count: int, seed: int = 0, max_words: int = 400) -> list[str]:
    """Deterministic texts from 1 to ``max_words`` words: short, medium and over the 256-token limit."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, max_words))) for _ in range(count)]


@pytest.fixture
def make_app(bundled_model) -> Iterator[Callable[..., Flask]]:
    """Factory: ``make_app(batching="timeout", inject_oom_above_padded_tokens=512, ...)``."""
    apps: list[Flask] = []

    def build(**overrides) -> Flask:
        inject = overrides.pop("inject_oom_above_padded_tokens", None)
        embedder = SentenceTransformerEmbedder(bundled_model, BUNDLED_MODEL_ID, inject)
        app = create_app({"warmup": False, **overrides}, embedder=embedder)
        apps.append(app)
        return app

    yield build
    for app in apps:
        service_of(app).close()
