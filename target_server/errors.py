"""JSON errors: every failure the server can answer, with its status and a machine-readable kind.

Clients (and Locust's failure classification) read ``error_type``; people read ``error``.
This is the one place where failures become HTTP: the HTTP layer's own :class:`ApiError` (bad
requests, auth), the service's domain errors (``target_server.domain_errors``) through
:data:`DOMAIN_ANSWERS`, and werkzeug's errors (404, 405, 413 from ``MAX_CONTENT_LENGTH``). Any
unexpected exception becomes a logged 500 -- the server stays up after all of them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException

from target_server.domain_errors import (
    ForwardPassFailed,
    InputTooLargeForDevice,
    NotReady,
    Overloaded,
    ServiceError,
    TimedOut,
)
from target_server.tokenization import InputTooLong, UnknownTask

log = logging.getLogger(__name__)

# Each domain error's answer: (status, error_type). the error table of docs/guides/target-server.md lists the same.
DOMAIN_ANSWERS: dict[type[Exception], tuple[int, str]] = {
    UnknownTask: (400, "invalid_request"),
    InputTooLargeForDevice: (413, "input_too_large_for_device"),
    InputTooLong: (422, "input_too_long"),
    Overloaded: (429, "overloaded"),
    ForwardPassFailed: (500, "internal_error"),
    NotReady: (503, "not_ready"),
    TimedOut: (503, "timeout"),
}


@dataclass
class ApiError(Exception):
    """An error of the HTTP layer itself (request shape, content type, auth): already a status."""

    status: int
    message: str
    error_type: str
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.error_type}: {self.message}"


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, "invalid_request")


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, "unauthorized", {"WWW-Authenticate": 'Bearer realm="embed-bench"'})


def too_large(message: str, error_type: str = "payload_too_large") -> ApiError:
    return ApiError(413, message, error_type)


def unsupported_media_type(message: str) -> ApiError:
    return ApiError(415, message, "unsupported_media_type")


def json_error(status: int, message: str, error_type: str, headers: dict[str, str] | None = None) -> Response:
    response = Response(
        json.dumps({"error": message, "error_type": error_type}), status=status, mimetype="application/json"
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def domain_answer(error: Exception) -> Response:
    """The JSON answer for a domain error, found by class (subclasses answer as their parent)."""
    status, error_type = next(DOMAIN_ANSWERS[kind] for kind in type(error).__mro__ if kind in DOMAIN_ANSWERS)
    retry_after_s = error.retry_after_s if isinstance(error, ServiceError) else None
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return json_error(status, str(error), error_type, headers)


def register_error_handlers(app: Flask) -> None:
    for kind in DOMAIN_ANSWERS:
        app.register_error_handler(kind, domain_answer)

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return json_error(error.status, error.message, error.error_type, error.headers)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        kind = (error.name or "http_error").lower().replace(" ", "_")
        message = error.description or error.name
        if error.code == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"request body over the limit of {limit} bytes"
            kind = "payload_too_large"
        return json_error(error.code or 500, message, kind)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return json_error(500, f"internal error: {type(error).__name__}", "internal_error")
