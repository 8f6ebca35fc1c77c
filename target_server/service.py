"""The embedding service: model, batcher and metrics behind the routes, and the readiness state.

Kept apart from the routes so the HTTP layer only parses and renders, and from the app factory so
tests can inject an embedder. It lives in ``app.extensions["embed_bench"]`` (Flask's ``init_app``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
from flask import Flask, current_app

from target_server.batching import BATCHERS, Batcher, Job
from target_server.config import ServerConfig
from target_server.domain_errors import NotReady
from target_server.embedder import SentenceTransformerEmbedder
from target_server.gpu_metrics import gpu_collector
from target_server.hardware import describe_hardware
from target_server.metrics import ServerMetrics
from target_server.models import load_embedder
from target_server.parsing import EmbedRequest
from target_server.tracing import RequestTrace, ServerTracing, step

log = logging.getLogger(__name__)
EXTENSION = "embed_bench"


@dataclass(frozen=True)
class EmbedResult:
    vectors: np.ndarray  # float32, inputs x dims, in input order
    tokens: int
    queue_ms: float
    inference_ms: float


class EmbeddingService:
    def __init__(
        self,
        config: ServerConfig,
        embedder: SentenceTransformerEmbedder | None = None,
        tracing: ServerTracing | None = None,
    ) -> None:
        self.config = config
        # Traces (tracing.py): given (tests), or from --otel and the OTEL_* variables; None: off.
        self.tracing = tracing if tracing is not None else ServerTracing.configured(self.config.otel)
        self.metrics = ServerMetrics()
        self.embedder = embedder
        self.batcher: Batcher | None = None
        self.max_batch_tokens: int | None = None  # set at load, once the device is known
        self.state = "loading"
        self._ready = threading.Event()
        self.metrics_port: int | None = None  # a listener for /metrics alone (serve --metrics-port)

    def init_app(self, app: Flask) -> None:
        app.extensions[EXTENSION] = self
        if self.config.load_in_background:
            threading.Thread(target=self._load_logged, name="model-loader", daemon=True).start()
        else:
            self.load()

    # ---- lifecycle ----------------------------------------------------------------------------
    def load(self) -> None:
        """Load the model (unless injected), start the batcher, warm up; then report ready."""
        if self.embedder is None:
            self.embedder = load_embedder(self.config)
        batcher_class = BATCHERS[self.config.batching]
        self.max_batch_tokens = self.config.batch_token_budget(self.embedder.info.device)
        self.batcher = batcher_class(
            self.embedder,
            self.metrics,
            max_batch_tokens=self.max_batch_tokens,
            max_queue_tokens=self.config.max_queue_tokens,
            batch_timeout_s=self.config.batch_timeout_s,
            request_timeout_s=self.config.request_timeout_s,
        )
        self.batcher.tracing = self.tracing
        if self.config.warmup:
            self.batcher.warmup(self.embedder.warmup_batch(self.max_batch_tokens))
            settle = getattr(self.embedder, "settle_batches", None)
            if self.config.warmup_seconds > 0 and settle is not None:
                self.batcher.settle(settle(self.max_batch_tokens), self.config.warmup_seconds)
        gpu = gpu_collector(self.embedder.info.device)
        if gpu is not None:
            self.metrics.collector(gpu)
        self.batcher.start()
        self.state = "ready"
        self._ready.set()
        info = self.embedder.info
        log.info(
            "ready: %s (%d dims, %d max tokens) on %s/%s, batching=%s, max_batch_tokens=%d",
            info.name,
            info.dimensions,
            info.max_input_tokens,
            info.device,
            info.dtype,
            self.config.batching,
            self.max_batch_tokens,
        )

    def _load_logged(self) -> None:
        try:
            self.load()
        except Exception as error:
            log.exception("model loading failed")
            self.state = f"failed: {type(error).__name__}: {error}"

    def wait_ready(self, timeout_s: float) -> bool:
        return self._ready.wait(timeout_s)

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.stop()
        if self.tracing is not None:
            self.tracing.close()

    @property
    def healthy(self) -> bool:
        return self._ready.is_set() and self.batcher is not None and self.batcher.alive()

    def info(self) -> dict:
        payload: dict = {
            "status": self.state,
            "batching": {
                "mode": self.config.batching,
                "max_batch_tokens": self.max_batch_tokens,
                "batch_timeout_s": self.config.batch_timeout_s if self.config.batching == "timeout" else None,
                "max_queue_tokens": self.config.max_queue_tokens,
            },
            "metrics": {"path": "/metrics", "port": self.metrics_port},
            "limits": {
                "max_inputs_per_request": self.config.max_inputs_per_request,
                "max_body_bytes": self.config.max_body_bytes,
                "request_timeout_s": self.config.request_timeout_s,
            },
        }
        if self.embedder is not None:
            info = self.embedder.info
            payload |= {
                "model": info.name,
                "dimensions": info.dimensions,
                "max_input_tokens": info.max_input_tokens,
                "device": info.device,
                "dtype": info.dtype,
                "tasks": list(info.tasks) if info.tasks else None,
                "parameters": info.parameters,
                "synthetic": info.synthetic,
                "engine": info.engine,
                "quantization": info.quantization,
                "engine_detail": info.engine_detail,
                "attention": info.attention,
                "hardware": describe_hardware(info.device).as_dict(),
            }
            if info.note:
                payload["note"] = info.note
        return payload

    # ---- the work -----------------------------------------------------------------------------
    def require_ready(self) -> SentenceTransformerEmbedder:
        """The loaded embedder, or :class:`NotReady` while loading (or after a failed load)."""
        if not self.healthy or self.embedder is None or self.batcher is None:
            raise NotReady.because(self.state)
        return self.embedder

    def embed(self, request: EmbedRequest, trace: RequestTrace | None = None) -> EmbedResult:
        """The request's embeddings; ``trace`` (tracing on) gains its tokenize, queue and pass spans."""
        self.require_ready()
        # InputTooLong and UnknownTask pass up to the HTTP layer, which answers 422 and 400.
        with step(trace, "tokenize"):
            ids = self.embedder.tokenize(request.texts, truncate=request.truncate, task=request.task)
        # Plain models ignore the task (beyond its prompt), so it must not split their batches.
        job = self.batcher.submit(ids, request.task if self.embedder.info.tasks else None, trace)
        try:
            vectors = job.wait(self.config.request_timeout_s)
        finally:
            self.batcher.release(job)
            self.metrics.request_seconds.observe(time.perf_counter() - job.enqueued_at)
            if trace is not None:
                self._trace_job(trace, job)
        if request.dimensions is not None:
            vectors = vectors[:, : request.dimensions]
        if request.normalized:  # as torch.nn.functional.normalize: v / max(||v||, 1e-12)
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        queue_ms, inference_ms = job.timings_ms()
        return EmbedResult(vectors=vectors, tokens=job.tokens, queue_ms=queue_ms, inference_ms=inference_ms)

    @staticmethod
    def _trace_job(trace: RequestTrace, job: Job) -> None:
        """The queue wait and the passes, as the batcher measured them (a job cut short by its timeout
        has only the part it lived through)."""
        trace.span.set_attribute("embed.inputs", len(job.ids))
        trace.span.set_attribute("embed.tokens", job.tokens)
        started = job.started_at
        trace.interval("queue wait", job.enqueued_at, started if started is not None else time.perf_counter())
        if started is not None:
            trace.interval("forward pass", started, job.finished_at or time.perf_counter(), trace.passes)


def current_service() -> EmbeddingService:
    return current_app.extensions[EXTENSION]
