"""Response checks and failure classes: what every embed-bench user applies to every response.

Pure functions (no Locust import, so no gevent monkey-patching) shared by all backends:

- a 200 must carry one finite vector per input, all of one dimension, else ``bad body: ...``
  (``bad body: 31 embeddings for 32 inputs``); bodies are parsed with orjson and checked with a few
  C-level passes, so a 128 x 1024 response costs the load generator a few ms, not the 45 ms of
  ``json.loads`` and per-item checks;
- a request without a response is named by what happened (``timeout``, ``connection refused``,
  ``connection reset``, ``connection closed``, ``host not resolved``, ...), from the exceptions of
  geventhttpclient (FastHttpUser's client) and the sockets below it;
- an HTTP error is ``HTTP <status> <code>`` with the backend's machine-readable code: the Jina API's
  ``code``, the bundled server's ``error_type``, an OpenAI-style ``error.code``/``error.type``, or
  SageMaker's ``x-amzn-ErrorType`` (a ``ModelError`` also says whether the container timed out or
  which status it returned).

Messages are categorical on purpose: Locust's failures table has one row per distinct message.
"""

from __future__ import annotations

import errno
import json
import math
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import orjson

MAX_BACKOFF_S = 30.0
_CONNECTION_CLASSES = (
    (socket.gaierror, "host not resolved"),
    (ConnectionRefusedError, "connection refused"),
    (ConnectionResetError, "connection reset"),
    (ConnectionAbortedError, "connection aborted"),
    (TimeoutError, "timeout"),
    (ssl.SSLError, "tls error"),
)


# Failure classes of a request that reached no server, or lost it: what a report calls "the target
# was unreachable". Timeouts and TLS errors are not among them: a server answered too slowly, or badly.
CONNECTION_FAILURES = (
    "connection refused",
    "connection reset",
    "connection closed",
    "connection aborted",
    "connection error",
    "host not resolved",
)
UNREACHABLE = ("connection refused", "host not resolved")  # instant failures: the user pauses


class RequestFailure(Exception):
    """A failure whose repr is its message, so Locust's failures table shows just the class."""

    def __repr__(self) -> str:
        return str(self)


class BadBody(ValueError):
    """A 200 response whose body is not what the backend promises."""


def embedding_items(body: Any) -> list[dict]:
    """The ``data`` list shared by the OpenAI/Jina and the Jina SageMaker container bodies, each item
    carrying an ``embedding`` (the two differ in where they put usage and order)."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise BadBody("bad body: no data list")
    items = body["data"]
    if not all(isinstance(item, dict) and "embedding" in item for item in items):
        raise BadBody("bad body: data item without embedding")
    return items


@dataclass(frozen=True)
class Embeddings:
    vectors: Sequence[Sequence[float]]
    total_tokens: int | None  # None when the backend reports no usage


def _causes(exc: BaseException, limit: int = 12) -> list[BaseException]:
    """The exception and what it wraps (geventhttpclient's ``RetriesExceeded`` keeps the socket error
    in ``original``), breadth-first and bounded."""
    found: list[BaseException] = []
    queue: list[BaseException] = [exc]
    while queue and len(found) < limit:
        current = queue.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        nested = [current.__cause__, current.__context__, getattr(current, "original", None)]
        nested += [arg for arg in current.args if isinstance(arg, BaseException)]
        queue += [item for item in nested if isinstance(item, BaseException)]
    return found


def classify_exception(exc: BaseException) -> str:
    """The failure class of a request that got no (complete) HTTP response."""
    causes = _causes(exc)
    for cause in causes:
        # geventhttpclient's HTTPConnectionClosed, matched by name: importing it would import gevent
        # into the core (and monkey-patch nothing, but load the hub) for every command that classifies
        if type(cause).__name__ == "HTTPConnectionClosed":
            return "connection closed"
        for kind, label in _CONNECTION_CLASSES:
            if isinstance(cause, kind):
                return label
        if isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED:
            return "connection refused"
    text = " ".join(str(cause) for cause in causes).lower()
    if "timed out" in text:
        return "timeout"
    if "incomplete response" in text or "connection closed" in text:
        return "connection closed"  # the body broke off: geventhttpclient's HTTPParseError
    if isinstance(exc, OSError):
        return "connection error"
    return f"request error: {type(exc).__name__}"


def error_code(body: Any) -> str | None:
    """The machine-readable error class in a JSON error body, whichever convention it follows."""
    if not isinstance(body, dict):
        return None
    for key in ("code", "error_type"):  # Jina API; the bundled server
        if isinstance(body.get(key), str) and body[key]:
            return body[key]
    error = body.get("error")
    if isinstance(error, dict):  # OpenAI: {"error": {"message", "type", "code"}}
        for key in ("code", "type"):
            if isinstance(error.get(key), str) and error[key]:
                return error[key]
    return None


def check_embeddings(result: Embeddings, inputs: int, dimension: int | None) -> str | None:
    """The failure message for a wrong body, or None when it is right. Every check is exact and runs
    in C over the parsed lists: lengths, then one sum over all values (a NaN or infinity makes it
    non-finite; only then is each value looked at, so a finite sum that overflows is not a failure)."""
    vectors = result.vectors
    if len(vectors) != inputs:
        return f"bad body: {len(vectors)} embeddings for {inputs} inputs"
    if not all(map(list.__instancecheck__, vectors)):
        return "bad body: an embedding is not a list"
    sizes = set(map(len, vectors))
    if len(sizes) > 1:
        return f"bad body: embeddings of dimensions {sorted(sizes)}"
    (size,) = sizes
    if size == 0:
        return "bad body: empty embedding"
    if dimension is not None and size != dimension:
        return f"bad body: dimension {size}, expected {dimension}"
    try:
        total = sum(map(sum, vectors))
    except TypeError:
        return "bad body: non-numeric embedding values"
    if not math.isfinite(total) and not all(map(math.isfinite, chain.from_iterable(vectors))):
        return "bad body: non-finite embedding values"
    return None


def _reject_constant(name: str) -> float:
    raise BadBody("bad body: non-finite embedding values")  # JSON NaN / Infinity literals


def parse_json(content: bytes | None) -> Any:
    """orjson, which rejects NaN and Infinity literals as invalid JSON; only such a rejected body is
    parsed again with ``json``, to tell a non-finite value from a body that is not JSON at all."""
    try:
        return orjson.loads(content or b"")
    except orjson.JSONDecodeError:
        pass
    try:
        json.loads(content or b"", parse_constant=_reject_constant)
    except BadBody:
        raise
    except ValueError as exc:
        raise BadBody("bad body: not JSON") from exc
    raise BadBody("bad body: not JSON")  # valid for json, not for orjson (e.g. lone surrogates)


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare for rate limits, and the default pause covers it


def http_failure(status: int, headers: Mapping[str, str], content: bytes) -> str:
    """The failure message of a non-200 response."""
    error_type = headers.get("x-amzn-ErrorType", "").split(":", 1)[0].strip()
    try:
        body = orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        body = None
    if error_type:
        detail = _model_error_detail(body) if error_type == "ModelError" else ""
        return f"HTTP {status} {error_type}{detail}"
    code = error_code(body)
    return f"HTTP {status} {code}" if code else f"HTTP {status}"


def _model_error_detail(body: Any) -> str:
    """A SageMaker ModelError is the container's failure: did it time out, or what did it return?"""
    if not isinstance(body, dict):
        return ""
    text = " ".join(str(body.get(key, "")) for key in ("Message", "message", "OriginalMessage")).lower()
    if "timed out" in text:
        return ": container timeout"
    status = body.get("OriginalStatusCode")
    return f": container returned {status}" if isinstance(status, int) else ""


def backoff_seconds(status: int, headers: Mapping[str, str], failure: str | None = None) -> float:
    """Pause before a user's next request after a failure: honour Retry-After (capped), and wait a
    second after a 429 without one, so a rate-limited user does not hammer the server. A target
    nobody answers for (``UNREACHABLE``: nothing listens, no such host) fails a request in well under
    a millisecond: without the same second's pause a cell would spend every request it planned in
    an instant while a restarting server is down, and the whole grid with it."""
    retry_after = retry_after_seconds(headers.get("Retry-After"))
    if retry_after is not None:
        return min(retry_after, MAX_BACKOFF_S)
    if status == 429 or (status == 0 and failure in UNREACHABLE):
        return 1.0
    return 0.0
