"""A real OTLP/HTTP receiver for tests: it takes what a collector takes on ``/v1/traces`` and decodes it.

Bodies are ``ExportTraceServiceRequest`` protobufs (``opentelemetry-proto``, the specification's own
messages), gzip-compressed or not, as any OTLP/HTTP exporter sends them; the answer is an empty
``ExportTraceServiceResponse``, as a collector gives. ``/v1/metrics`` and ``/v1/logs`` (Locust's own
``--otel`` exports) are answered 200 and counted, not decoded. Anything else is a 404, and a body
that does not decode a 400, both kept in ``errors`` so a test can insist there were none.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass(frozen=True)
class ReceivedSpan:
    """One decoded span with its service; ids as hex, as W3C ``traceparent`` writes them."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    links: tuple[tuple[str, str], ...]  # (trace id, span id) of each link
    status_code: int


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def decode(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        service=str(resource.get("service.name", "")),
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        kind=span.kind,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes={a.key: _value(a.value) for a in span.attributes},
                        links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links),
                        status_code=span.status.code,
                    )
                )
    return spans


@dataclass
class OtlpReceiver:
    url: str
    spans: list[ReceivedSpan] = field(default_factory=list)
    other_posts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, service: str) -> list[ReceivedSpan]:
        with self.lock:
            return [span for span in self.spans if span.service == service]


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A receiver on a free port of 127.0.0.1; ``url`` is what ``OTEL_EXPORTER_OTLP_ENDPOINT`` takes."""
    received: OtlpReceiver | None = None

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            assert received is not None
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding", "") == "gzip":
                body = gzip.decompress(body)
            if self.path in ("/v1/metrics", "/v1/logs"):
                with received.lock:
                    received.other_posts[self.path] = received.other_posts.get(self.path, 0) + 1
                return self._answer(200, b"")
            if self.path != "/v1/traces":
                received.errors.append(f"POST {self.path}")
                return self._answer(404, b"")
            if self.headers.get("Content-Type") != "application/x-protobuf":
                received.errors.append(f"Content-Type {self.headers.get('Content-Type')}")
                return self._answer(400, b"")
            request = ExportTraceServiceRequest()
            try:
                request.ParseFromString(body)
            except Exception as error:  # DecodeError: a body that is not the message
                received.errors.append(f"undecodable body: {error}")
                return self._answer(400, b"")
            spans = decode(request)
            with received.lock:
                received.spans.extend(spans)
            self._answer(200, ExportTraceServiceResponse().SerializeToString())

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    received = OtlpReceiver(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
