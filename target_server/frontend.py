"""One front end of ``serve --frontends N``: HTTP, parsing, tokenization and encoding, in a process of
its own; the forward passes run in the model process (target_server.model_process).

A front end holds the model's tokenizer (a :class:`~target_server.tokenization.TextTokenizer` the model
process sends once the model is loaded), never its weights, and imports no torch. Its request
threads send token ids over one connection (:class:`ModelLink`), on which one reader thread hands
each reply to the thread that waits for it. Everything that must be counted once -- admission,
metrics, the batcher -- stays in the model process; ``/metrics`` on any front end is the model
process's registry, to which each front end reports the HTTP answers it gave.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Client, Connection
from typing import Any

from flask import Flask

from target_server.config import ServerConfig
from target_server.domain_errors import NotReady, ServiceError, TimedOut
from target_server.model_link import (
    COUNT,
    EMBED,
    INFO,
    METRICS,
    STATE,
    TOKENIZER,
    LinkAddress,
    error_from,
)
from target_server.parsing import EmbedRequest
from target_server.serving import EXTENSION, EmbedResult, ModelInfo, shape_vectors
from target_server.tokenization import TextTokenizer
from target_server.tracing import ServerTracing, span_ids, step, trace_job

log = logging.getLogger(__name__)

# A front end reports its HTTP answers (embed_requests_total) in one message this often, not one
# message per answer: the model process's CPU per request is what bounds the whole server.
COUNT_INTERVAL_S = 0.25
CONTROL_TIMEOUT_S = 10.0  # health, info, metrics: the model process answers these from its reader thread
# An embed call waits for the model process's own answer, which comes within the request timeout;
# this much more covers the trip, so a model process that stopped answering still gets a 503.
EMBED_GRACE_S = 30.0


@dataclass(eq=False)
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    payload: Any = None


class ModelLink:
    """A front end's connection to the model process: calls from many request threads at once."""

    def __init__(self, connection: Connection, on_lost: Callable[[str], None] | None = None) -> None:
        """``on_lost``: called once, with the reason, when the connection is gone (a gunicorn worker
        then exits, so that gunicorn starts one that connects again)."""
        self._connection = connection
        self._on_lost = on_lost
        self._send_lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count()
        self.lost: str | None = None  # why the connection is gone; None while it stands
        self._reader = threading.Thread(target=self._read, name="model-link", daemon=True)
        self._reader.start()

    @classmethod
    def connect(cls, address: LinkAddress, on_lost: Callable[[str], None] | None = None) -> ModelLink:
        return cls(Client(address.path, "AF_UNIX", authkey=address.authkey), on_lost)

    def call(self, kind: str, *args: Any, timeout_s: float = CONTROL_TIMEOUT_S) -> Any:
        """Send a message and wait for its answer; the model process's error is raised as itself."""
        request_id = next(self._ids)
        pending = self._pending[request_id] = _Pending()
        try:
            self._send((kind, request_id, *args))
            if not pending.done.wait(timeout_s):
                raise TimedOut(f"the model process did not answer within {timeout_s:g} s", 5)
        finally:
            self._pending.pop(request_id, None)
        if not pending.ok:
            raise error_from(pending.payload)
        return pending.payload

    def post(self, kind: str, *args: Any) -> None:
        """Send a message that has no answer; nothing happens once the connection is gone."""
        with contextlib.suppress(NotReady):
            self._send((kind, *args))

    def _send(self, message: tuple) -> None:
        if self.lost is not None:
            raise NotReady.because(self.lost)
        try:
            with self._send_lock:
                self._connection.send(message)
        except (OSError, ValueError) as error:
            self._lose(f"model process unreachable: {error}")
            raise NotReady.because(self.lost or "model process unreachable") from None

    def _read(self) -> None:
        while True:
            try:
                request_id, ok, payload = self._connection.recv()
            except (EOFError, OSError):
                self._lose("model process exited")
                return
            except Exception:
                log.exception("front end: unreadable answer from the model process")
                continue
            pending = self._pending.get(request_id)
            if pending is not None:  # else its caller gave up waiting
                pending.ok, pending.payload = ok, payload
                pending.done.set()

    def _lose(self, reason: str) -> None:
        """Fail every waiting call: the model process is gone, and so are their answers."""
        first = self.lost is None
        if first:
            self.lost = reason
            log.error("front end %d: %s", os.getpid(), reason)
        for pending in list(self._pending.values()):
            pending.ok, pending.payload = False, ("NotReady", f"model not ready ({reason})", 5)
            pending.done.set()
        if first and self._on_lost is not None:
            self._on_lost(reason)

    def close(self) -> None:
        """Hang up: a shutdown wakes the reader blocked on the socket (a close alone would not)."""
        self._on_lost = None
        self._lose("front end closed")
        with (
            contextlib.suppress(OSError),
            socket.fromfd(self._connection.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as dup,
        ):
            dup.shutdown(socket.SHUT_RDWR)
        self._reader.join(timeout=5)
        self._connection.close()


class FrontendService:
    """The routes' service (serving.Service) in a front end: tokenize here, embed in the model process."""

    def __init__(
        self,
        config: ServerConfig,
        link: ModelLink,
        *,
        frontends: int,
        tracing: ServerTracing | None = None,
    ) -> None:
        self.config = config
        self.link = link
        self.frontends = frontends
        self.tracing = tracing if tracing is not None else ServerTracing.configured(config.otel)
        self._tokenizer: TextTokenizer | None = None
        self._info: ModelInfo | None = None
        self._fetch_lock = threading.Lock()
        self.link_address: LinkAddress | None = None
        self._counts: collections.Counter[tuple[str, int]] = collections.Counter()
        self._count_lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._report_counts, name="count-reporter", daemon=True).start()

    @classmethod
    def connect(
        cls,
        config: ServerConfig,
        address: LinkAddress,
        *,
        frontends: int,
        tracing: ServerTracing | None = None,
        on_lost: Callable[[str], None] | None = None,
    ) -> FrontendService:
        service = cls(config, ModelLink.connect(address, on_lost), frontends=frontends, tracing=tracing)
        service.link_address = address
        return service

    def init_app(self, app: Flask) -> None:
        app.extensions[EXTENSION] = self

    # ---- state --------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        try:
            return self.link.call(STATE)
        except ServiceError as error:
            return {"healthy": False, "state": str(error)}

    @property
    def healthy(self) -> bool:
        return self._state()["healthy"]

    @property
    def state(self) -> str:
        return self._state()["state"]

    @property
    def model_info(self) -> ModelInfo | None:
        if self._info is None:
            try:
                self.require_ready()
            except ServiceError:
                return None
        return self._info

    def require_ready(self) -> ModelInfo:
        """The model's description; the first call after the model loaded fetches the tokenizer."""
        if self._info is not None and self.link.lost is None:
            return self._info
        if self.link.lost is not None:
            raise NotReady.because(self.link.lost)
        with self._fetch_lock:
            if self._info is None:
                self._tokenizer, self._info = self.link.call(TOKENIZER)
        return self._info

    def info(self) -> dict:
        payload = self.link.call(INFO)
        payload["frontends"] = {"processes": self.frontends, "this_pid": os.getpid()}
        return payload

    # ---- the work -----------------------------------------------------------------------------
    def embed(self, request: EmbedRequest, trace: Any = None) -> EmbedResult:
        self.require_ready()
        assert self._tokenizer is not None
        with step(trace, "tokenize"):
            ids = self._tokenizer.tokenize(request.texts, truncate=request.truncate, task=request.task)
        link = span_ids(trace.link) if trace is not None else None
        vectors, tokens, queue_ms, inference_ms, stamps, passes = self.link.call(
            EMBED, ids, request.task, link, timeout_s=self.config.request_timeout_s + EMBED_GRACE_S
        )
        if trace is not None and self.tracing is not None:
            trace.passes.extend(self.tracing.remote_context(ids_) for ids_ in passes)
            trace_job(trace, len(ids), tokens, *stamps)
        vectors = shape_vectors(vectors, request.dimensions, request.normalized)
        return EmbedResult(vectors=vectors, tokens=tokens, queue_ms=queue_ms, inference_ms=inference_ms)

    def count_request(self, endpoint: str, status: int) -> None:
        with self._count_lock:
            self._counts[endpoint, status] += 1

    def flush_counts(self) -> None:
        """Send the answers counted since the last report (nothing if none)."""
        with self._count_lock:
            counts, self._counts = self._counts, collections.Counter()
        if counts:
            self.link.post(COUNT, dict(counts))

    def _report_counts(self) -> None:
        while not self._stop.wait(COUNT_INTERVAL_S):
            self.flush_counts()

    def render_metrics(self) -> bytes:
        """The model process's registry: this front end's answers up to now are in it (they go first,
        on the same connection); another front end's may be up to COUNT_INTERVAL_S behind."""
        self.flush_counts()
        return self.link.call(METRICS)

    def close(self) -> None:
        self._stop.set()
        self.flush_counts()
        self.link.close()
        if self.tracing is not None:
            self.tracing.close()
