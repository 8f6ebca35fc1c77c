"""Apps built around the shared bundled model, so each test pays for Flask, not for loading torch weights."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from target_server import create_app, service_of
from target_server.embedder import BUNDLED_MODEL_ID, SentenceTransformerEmbedder
from tests.target_server.fault_embedder import OutOfMemoryAbove

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


def scrape(text: str) -> dict[str, Metric]:
    """``/metrics`` text parsed by prometheus-client's own parser: families by name."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(families: dict[str, Metric], name: str, **labels: str) -> float:
    """The value of sample ``name`` (e.g. ``embed_requests_total``) with exactly these labels."""
    return next(
        s.value
        for family in families.values()
        for s in family.samples
        if s.name == name and s.labels == labels
    )


def mixed_texts(count: int, seed: int = 0, max_words: int = 400) -> list[str]:
    """Deterministic texts from 1 to ``max_words`` words: short, medium and over the 256-token limit."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, max_words))) for _ in range(count)]


@pytest.fixture
def make_app(bundled_model) -> Iterator[Callable[..., Flask]]:
    """Factory: ``make_app(batching="timeout", oom_above_padded_tokens=512, ...)``.

    ``oom_above_padded_tokens`` puts the :class:`OutOfMemoryAbove` double around the real embedder;
    every other keyword is a server setting.
    """
    apps: list[Flask] = []

    def build(oom_above_padded_tokens: int | None = None, **overrides) -> Flask:
        embedder = SentenceTransformerEmbedder(bundled_model, BUNDLED_MODEL_ID)
        if oom_above_padded_tokens is not None:
            embedder = OutOfMemoryAbove(embedder, oom_above_padded_tokens)
        app = create_app({"warmup": False, **overrides}, embedder=embedder)
        apps.append(app)
        return app

    yield build
    for app in apps:
        service_of(app).close()
