"""OTLP export in a helper process: the SDK's exporter encodes and sends the spans, but not on the
core that sends the load or serves the model.

Why: the OTLP exporter builds its protobuf messages in Python, about 110 us of CPU per span on the
2-core machine (more inside a busy run), and under gevent or the GIL that CPU comes out of the load
generator's requests or the server's passes. Here the process that makes the spans only flattens
each finished batch into plain tuples and writes it, pickled, down a pipe (a few us a span); a
helper process (``python -m embed_bench.core.span_export``) rebuilds the SDK's ``ReadableSpan``
objects and hands them to the SDK's own exporter (``embed_bench.core.otel``'s choice: OTLP over
http/protobuf or grpc, its endpoint, headers and timeout from the OTEL_* variables), so what reaches
a collector is byte for byte what the exporter would have sent in process (the tests hold the two
encodings equal).

It sits under the SDK's ``BatchSpanProcessor``, which still batches, flushes and shuts down as the
specification says: ``force_flush`` waits until the helper has exported everything written before
it, ``shutdown`` closes the pipe and waits for the helper to export the rest and exit. The helper is
started with the exporter, at setup, before any request is in flight (started at the first export,
mid-run, the fork stalled the load generator's event loop for about 300 ms and cut a few responses
short); a process forked after that (``--processes``, gunicorn) starts its own at its first export.
It ignores Ctrl-C (the run's own shutdown flushes it), and ends when its
pipe closes, so a load generator killed outright still has its last batch sent. A helper that dies
costs its spans, never the run: the exporter logs it once and drops spans from then on.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

log = logging.getLogger(__name__)
HEADER = struct.Struct(">I")  # each frame: its length, then a pickled message
SPANS, FLUSH = "spans", "flush"


def _context(context: Any) -> tuple:
    state = tuple(context.trace_state.items()) if context.trace_state else ()
    return (context.trace_id, context.span_id, int(context.trace_flags), state, context.is_remote)


def flatten(spans: Sequence[Any]) -> tuple[list, list, list]:
    """Finished SDK spans as plain tuples (what pickles in a few us a span): the resources and
    instrumentation scopes they name, each once, and a row per span that points into them."""
    resources: dict[int, int] = {}
    scopes: dict[int, int] = {}
    resource_rows: list[tuple] = []
    scope_rows: list[tuple] = []
    rows = []
    for span in spans:
        resource, scope = span.resource, span.instrumentation_scope
        if id(resource) not in resources:
            resources[id(resource)] = len(resource_rows)
            resource_rows.append((dict(resource.attributes), resource.schema_url))
        if id(scope) not in scopes:
            scopes[id(scope)] = len(scope_rows)
            scope_rows.append(
                (scope.name, scope.version, scope.schema_url, dict(scope.attributes or {}))
                if scope is not None
                else None
            )
        rows.append(
            (
                span.name,
                _context(span.context),
                _context(span.parent) if span.parent is not None else None,
                span.kind.value,
                span.start_time,
                span.end_time,
                dict(span.attributes or {}),
                span.dropped_attributes,
                [(e.name, dict(e.attributes or {}), e.timestamp, e.dropped_attributes) for e in span.events],
                span.dropped_events,
                [
                    (_context(link.context), dict(link.attributes or {}), link.dropped_attributes)
                    for link in span.links
                ],
                span.dropped_links,
                span.status.status_code.value,
                span.status.description,
                resources[id(resource)],
                scopes[id(scope)],
            )
        )
    return resource_rows, scope_rows, rows


def rebuild(resource_rows: list, scope_rows: list, rows: list) -> list[Any]:
    """The SDK's ``ReadableSpan`` objects that :func:`flatten` flattened, dropped counts included."""
    from opentelemetry.attributes import BoundedAttributes
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.util import BoundedList
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

    def context(row: tuple) -> SpanContext:
        trace_id, span_id, flags, state, remote = row
        return SpanContext(trace_id, span_id, remote, TraceFlags(flags), TraceState(list(state)))

    def attributes(values: dict, dropped: int) -> BoundedAttributes:
        bounded = BoundedAttributes(attributes=values)
        bounded.dropped = dropped
        return bounded

    def bounded_list(items: list, dropped: int) -> BoundedList:
        kept = BoundedList.from_seq(None, items)
        kept.dropped = dropped
        return kept

    resources = [Resource(values, schema_url) for values, schema_url in resource_rows]
    scopes = [
        InstrumentationScope(row[0], row[1], row[2], row[3]) if row is not None else None
        for row in scope_rows
    ]
    spans = []
    for row in rows:
        (name, own, parent, kind, start, end, values, dropped, events, dropped_events, links,
         dropped_links, status_code, description, resource, scope) = row  # fmt: skip
        spans.append(
            ReadableSpan(
                name=name,
                context=context(own),
                parent=context(parent) if parent is not None else None,
                resource=resources[resource],
                attributes=attributes(values, dropped),
                events=bounded_list(
                    [Event(n, attributes(a, d), timestamp=t) for n, a, t, d in events], dropped_events
                ),
                links=bounded_list([Link(context(c), attributes(a, d)) for c, a, d in links], dropped_links),
                kind=SpanKind(kind),
                status=Status(StatusCode(status_code), description),
                start_time=start,
                end_time=end,
                instrumentation_scope=scopes[scope],
            )
        )
    return spans


def write_frame(stream: BinaryIO, message: tuple) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(payload)) + payload)
    stream.flush()


def read_frame(stream: BinaryIO) -> tuple | None:
    """The next message, or None at the end of the stream."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return pickle.loads(payload)


class HelperProcessExporter(SpanExporter):
    """A ``SpanExporter`` whose spans the SDK's exporter named ``name`` (``otlp``) sends from a
    helper process, configured by ``env`` as it would be in this one."""

    def __init__(self, name: str, env: Mapping[str, str], shutdown_timeout_s: float = 30.0) -> None:
        self._name = name
        self._env = {**os.environ, **env}
        self._shutdown_timeout_s = shutdown_timeout_s
        self._lock = threading.Lock()  # the batch processor's worker and force_flush may both write
        self._process: subprocess.Popen[bytes] | None = None
        self._pid = -1
        self._flushes = 0
        self._partial = b""  # the start of a flush answer not yet read to its end
        self._failed = False
        self._closed = False
        self._helper()  # now, before the load starts: forking mid-run stalled the gevent hub

    def _helper(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._pid != os.getpid():  # first use, or a forked copy's
            self._process = subprocess.Popen(
                [sys.executable, "-m", "embed_bench.core.span_export", self._name],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=self._env,
            )
            self._pid = os.getpid()
            self._partial = b""
        return self._process

    def _send(self, message: tuple) -> subprocess.Popen[bytes] | None:
        """Write ``message`` to the helper; None (logged once) where it is gone."""
        if self._failed or self._closed:
            return None
        try:
            process = self._helper()
            assert process.stdin is not None
            write_frame(process.stdin, message)
            return process
        except (OSError, ValueError) as error:  # a broken pipe, or a pipe closed under us
            self._failed = True
            code = self._process.poll() if self._process is not None else None
            log.warning(
                "span export helper is gone (exit code %s: %s); spans from here on are dropped", code, error
            )
            return None

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        message = (SPANS, *flatten(spans))
        with self._lock:
            return SpanExportResult.SUCCESS if self._send(message) else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """True once the helper has exported everything written before this call; False when it
        has not within ``timeout_millis`` (a collector that does not answer) or is gone."""
        with self._lock:
            if self._process is None or self._pid != os.getpid():
                return not self._failed  # nothing was ever written from this process
            self._flushes += 1
            process = self._send((FLUSH, self._flushes))
            if process is None:
                return False
            assert process.stdout is not None
            answers = process.stdout.fileno()  # read raw: select sees no data a buffer holds
            expected = f"flushed {self._flushes}".encode()
            deadline = time.monotonic() + timeout_millis / 1000.0
            while (left := deadline - time.monotonic()) > 0:
                readable, _, _ = select.select([answers], [], [], left)
                if not readable:
                    break
                chunk = os.read(answers, 4096)
                if not chunk:
                    return False  # the helper is gone
                # the helper answers each flush in order, a line each; an earlier flush's answer
                # (come after that flush gave up waiting) is read past
                *lines, self._partial = (self._partial + chunk).split(b"\n")
                if expected in lines:
                    return True
            log.warning("span export helper did not finish a flush within %d ms", timeout_millis)
            return False

    def shutdown(self) -> None:
        """Close the pipe and wait for the helper to export what it has and exit."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            process = self._process
            if process is None or self._pid != os.getpid():
                return
            try:
                assert process.stdin is not None
                process.stdin.close()
                process.wait(self._shutdown_timeout_s)
            except (OSError, subprocess.TimeoutExpired):
                log.warning("span export helper did not finish in %.0f s; stopped", self._shutdown_timeout_s)
                process.kill()
                process.wait()


class HelperProcessBatchProcessor(BatchSpanProcessor):
    """The SDK's ``BatchSpanProcessor`` over a :class:`HelperProcessExporter`, whose
    ``force_flush`` also waits for the helper (the SDK's flushes the batch to the exporter, which
    for an in-process exporter means sent, and here means written down the pipe)."""

    def __init__(self, name: str, env: Mapping[str, str]) -> None:
        super().__init__(HelperProcessExporter(name, env))

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        flushed = super().force_flush(timeout_millis)
        return self.span_exporter.force_flush(timeout_millis) and flushed


def serve(name: str, source: BinaryIO, answers: BinaryIO) -> int:
    """The helper's loop: export each batch read from ``source`` with the exporter ``name``, answer
    each flush on ``answers``, and shut the exporter down at the end of the stream."""
    from embed_bench.core.otel import span_exporter

    exporter = span_exporter(name, os.environ)
    try:
        while (message := read_frame(source)) is not None:
            if message[0] == SPANS:
                exporter.export(rebuild(*message[1:]))
            elif message[0] == FLUSH:
                exporter.force_flush()
                answers.write(f"flushed {message[1]}\n".encode())
                answers.flush()
    finally:
        exporter.shutdown()
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run's own shutdown closes the pipe
    raise SystemExit(serve(sys.argv[1], sys.stdin.buffer, sys.stdout.buffer))
