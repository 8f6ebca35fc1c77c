"""What the HTTP layer needs of a service, whichever process holds the model.

Two services meet :class:`Service`: ``target_server.service.EmbeddingService`` (the model, batcher and
metrics in this process) and ``target_server.frontend.FrontendService`` (``serve --frontends N``: this
process parses and tokenizes, a model process of its own runs the batcher). The routes see only this
module, which imports neither torch nor the model, so a front end never loads either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from flask import current_app

EXTENSION = "embed_bench"  # where the app keeps its service: app.extensions[EXTENSION]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    dimensions: int
    max_input_tokens: int
    device: str
    dtype: str
    tasks: tuple[str, ...] | None
    parameters: int
    # Random weights or no model at all: the vectors mean nothing; `note` says what it is instead.
    synthetic: bool = False
    note: str | None = None
    # What runs the forward pass (--engine) and how its weights are quantized (--quantize; None: not).
    engine: str = "torch"
    quantization: str | None = None
    # The runtime, its version and the exported file it runs (None for torch as loaded).
    engine_detail: str | None = None
    # How a pass treats unlike lengths (--attention): "padded", or "packed (KERNEL)" (target_server.packed).
    attention: str = "padded"


@dataclass(frozen=True)
class EmbedResult:
    vectors: np.ndarray  # float32, inputs x dims, in input order
    tokens: int
    queue_ms: float
    inference_ms: float


class Service(Protocol):
    """The service behind the routes (app.extensions[EXTENSION])."""

    config: Any  # target_server.config.ServerConfig
    tracing: Any  # target_server.tracing.ServerTracing, or None: tracing off

    @property
    def healthy(self) -> bool: ...
    @property
    def state(self) -> str: ...
    @property
    def model_info(self) -> ModelInfo | None:
        """The model's description once loaded; None before."""
        ...

    def info(self) -> dict: ...
    def require_ready(self) -> ModelInfo:
        """The model's description, or ``NotReady`` while it loads (or after a failed load)."""
        ...

    def embed(self, request: Any, trace: Any = None) -> EmbedResult:
        """The request's (``parsing.EmbedRequest``) embeddings, shaped as it asked."""
        ...

    def count_request(self, endpoint: str, status: int) -> None: ...
    def render_metrics(self) -> bytes: ...
    def close(self) -> None: ...


def shape_vectors(vectors: np.ndarray, dimensions: int | None, normalized: bool) -> np.ndarray:
    """The first ``dimensions`` of each vector (Matryoshka truncation), renormalized if asked, as
    torch.nn.functional.normalize does: v / max(||v||, 1e-12)."""
    if dimensions is not None:
        vectors = vectors[:, :dimensions]
    if normalized:
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors


def current_service() -> Service:
    return current_app.extensions[EXTENSION]
