"""The embedding service: model, batcher and metrics behind the routes, and the readiness state.

Kept apart from the routes so the HTTP layer only parses and renders, and from the app factory so
tests can inject an embedder. It lives in ``app.extensions["embed_bench"]`` (Flask's ``init_app``),
or, with ``serve --frontends N``, in the model process (target_server.model_process), which front ends
reach over a socket: there :meth:`EmbeddingService.embed_ids` takes ids a front end tokenized.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask

from target_server.batching import BATCHERS, Batcher, Job
from target_server.config import ServerConfig
from target_server.domain_errors import NotReady
from target_server.embedder import SentenceTransformerEmbedder
from target_server.gpu_metrics import gpu_collector
from target_server.hardware import describe_hardware
from target_server.metrics import ServerMetrics
from target_server.models import load_embedder
from target_server.parsing import EmbedRequest
from target_server.serving import EXTENSION, EmbedResult, ModelInfo, shape_vectors
from target_server.tracing import RequestTrace, ServerTracing, step, trace_job

log = logging.getLogger(__name__)


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
        self.start()

    def start(self) -> None:
        """Load now, or in a background thread while /health answers 503 (``load_in_background``)."""
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
            # One process takes the requests (a front end of serve --frontends N rewrites this).
            "frontends": {"processes": 1, "this_pid": os.getpid()},
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
    @property
    def model_info(self) -> ModelInfo | None:
        return self.embedder.info if self.embedder is not None else None

    def require_ready(self) -> ModelInfo:
        """The loaded model's description, or :class:`NotReady` while loading (or after a failed load)."""
        if not self.healthy or self.embedder is None or self.batcher is None:
            raise NotReady.because(self.state)
        return self.embedder.info

    def embed(self, request: EmbedRequest, trace: Any = None) -> EmbedResult:
        """The request's embeddings; ``trace`` (tracing on) gains its tokenize, queue and pass spans."""
        self.require_ready()
        # InputTooLong and UnknownTask pass up to the HTTP layer, which answers 422 and 400.
        with step(trace, "tokenize"):
            ids = self.embedder.tokenize(request.texts, truncate=request.truncate, task=request.task)
        job = self.embed_ids(ids, request.task, trace)
        queue_ms, inference_ms = job.timings_ms()
        vectors = shape_vectors(job.vectors, request.dimensions, request.normalized)
        return EmbedResult(vectors=vectors, tokens=job.tokens, queue_ms=queue_ms, inference_ms=inference_ms)

    def embed_ids(self, ids: list[list[int]], task: str | None, trace: Any = None) -> Job:
        """Run tokenized inputs through the batcher, waiting on this thread; the answered job, its
        vectors in ``job.vectors``. Raises the batcher's errors (Overloaded, TimedOut, ...)."""
        job = self.submit_ids(ids, task, trace)
        try:
            job.vectors = job.wait(self.config.request_timeout_s)
        finally:
            self.settle(job, trace)
        return job

    def submit_ids(
        self,
        ids: list[list[int]],
        task: str | None,
        trace: Any = None,
        on_done: Callable[[Job], None] | None = None,
    ) -> Job:
        """Admit tokenized inputs to the batcher (Overloaded at once if over the budget); the caller
        waits on the job, or ``on_done`` is called when it ends, and then calls :meth:`settle`.
        ``trace`` is what the passes link to: this process's RequestTrace, or a front end's
        (tracing.PassLinks)."""
        self.require_ready()
        # Plain models ignore the task (beyond its prompt), so it must not split their batches.
        return self.batcher.submit(ids, task if self.embedder.info.tasks else None, trace, on_done)

    def settle(self, job: Job, trace: Any = None) -> None:
        """Once per job, after it ended (answered, failed or given up): its tokens leave the
        admission budget, its time is observed, and a local trace gets its queue and pass spans."""
        self.batcher.release(job)
        self.metrics.request_seconds.observe(time.perf_counter() - job.enqueued_at)
        if isinstance(trace, RequestTrace):  # a front end's trace gets its spans there
            trace_job(trace, len(job.ids), job.tokens, job.enqueued_at, job.started_at, job.finished_at)

    def count_request(self, endpoint: str, status: int, times: int = 1) -> None:
        self.metrics.requests.labels(endpoint, str(status)).inc(times)

    def render_metrics(self) -> bytes:
        return self.metrics.render()
