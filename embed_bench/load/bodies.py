"""Response bodies read within bounds: a size the load generator can afford, and a deadline.

FastHttpUser reads every body whole before the user sees it (``response.content``, decompressed in
one piece), and geventhttpclient's ``network_timeout`` bounds each ``recv``, not the response. So a
server that answers 50 MB costs the load generator 50 MB (and a gzip bomb far more), and a server
that sends a byte a second holds a user forever: each byte arrives well within the read timeout.

The users therefore ask for the response with ``stream=True`` and read the body here, at most
``body_limit(inputs)`` bytes before and after decompression: a ``Content-Length`` over the limit fails
at once without reading a byte of the body, a chunked or unannounced one as soon as it passes the
limit. The deadline is a ``gevent.Timeout`` around the whole request (``RequestDeadline``, a
``TimeoutError``: Locust's client and the failure classes see a timeout). A body left unread or cut
off leaves its connection closed, never back in the pool with bytes still in flight.

The limit is generous on purpose: an embedding is at most a few thousand floats, about 20 bytes each
in JSON (an 8,192-dimension vector takes about 200 KB), so 256 KiB per input plus 1 MiB of room
never fails a real answer, and a 128-input response may take 33 MiB.
"""

from __future__ import annotations

import zlib
from typing import Any

import brotli

from embed_bench.core.checks import BadBody

BASE_LIMIT_BYTES = 1 << 20  # 1 MiB
LIMIT_BYTES_PER_INPUT = 256 << 10  # 256 KiB
READ_BYTES = 64 << 10  # a chunked body is read in pieces of this size


class RequestDeadline(TimeoutError):
    """The request as a whole (connection, answer and body) took longer than --request-timeout."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"request timed out after {seconds:g} s (connection, answer and body)")


class BodyTooLarge(BadBody):
    """A body over the limit: ``bad body: over N bytes``, one failure class whatever its size."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"bad body: over {limit:,} bytes")


def body_limit(inputs: int) -> int:
    """The most bytes a response to a request of ``inputs`` inputs may take (module docstring)."""
    return BASE_LIMIT_BYTES + LIMIT_BYTES_PER_INPUT * max(1, inputs)


def read_body(response: Any, limit: int) -> bytes:
    """The body of a FastHttpUser response asked for with ``stream=True``, decoded as its
    ``Content-Encoding`` says; raises ``BodyTooLarge`` past ``limit`` bytes (raw or decoded),
    ``BadBody`` for an encoding that does not decode, and the transport's errors as they come."""
    raw = response._response  # geventhttpclient's HTTPSocketResponse: the socket behind the body
    headers = response.headers
    try:
        announced = int(headers.get("content-length", -1))
    except (TypeError, ValueError):
        announced = -1
    if announced > limit:
        raw.release()  # the body is unread: the connection is closed, not pooled
        raise BodyTooLarge(limit)
    body = raw.read() if announced >= 0 else _read_unannounced(raw, limit)
    encoding = (headers.get("content-encoding") or "identity").strip().lower()
    return body if encoding == "identity" else _decoded(body, encoding, limit)


def _read_unannounced(raw: Any, limit: int) -> bytes:
    """A chunked (or until-close) body, piece by piece, no further than ``limit``."""
    pieces = []
    size = 0
    while True:
        piece = raw.read(READ_BYTES)
        if not piece:
            return b"".join(pieces)
        size += len(piece)
        if size > limit:
            raw.release()
            raise BodyTooLarge(limit)
        pieces.append(piece)


def _decoded(body: bytes, encoding: str, limit: int) -> bytes:
    """Decompress within ``limit`` output bytes, so a small compressed body cannot become a huge one."""
    try:
        if encoding == "gzip":
            return _inflated(body, 16 + zlib.MAX_WBITS, limit)
        if encoding == "deflate":  # zlib-wrapped as the RFC says, or raw as some servers send it
            try:
                return _inflated(body, zlib.MAX_WBITS, limit)
            except zlib.error:
                return _inflated(body, -zlib.MAX_WBITS, limit)
        if encoding == "br":
            decoded = brotli.Decompressor().process(body, output_buffer_limit=limit + 1)
            if len(decoded) > limit:
                raise BodyTooLarge(limit)
            return decoded
    except (zlib.error, brotli.error) as error:
        raise BadBody(f"bad body: {encoding} that does not decode") from error
    raise BadBody(f"bad body: unknown content encoding {encoding}")


def _inflated(body: bytes, wbits: int, limit: int) -> bytes:
    decompressor = zlib.decompressobj(wbits)
    decoded = decompressor.decompress(body, limit + 1)
    if len(decoded) > limit or decompressor.unconsumed_tail:
        raise BodyTooLarge(limit)
    return decoded
