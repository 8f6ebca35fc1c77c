"""JSON errors: every failure the server can answer, with its status and a machine-readable kind.

Clients (and Locust's failure classification) read ``error_type``; people read ``error``.
Werkzeug's own HTTP errors (404, 405, 413 from ``MAX_CONTENT_LENGTH``) are rendered the same way,
and any unexpected exception becomes a logged 500 -- the server stays up after all of them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


@dataclass
class ApiError(Exception):
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


def input_too_long(message: str) -> ApiError:
    return ApiError(422, message, "input_too_long")


def overloaded(retry_after_s: int) -> ApiError:
    return ApiError(
        429,
        f"server at its admission limit; retry after {retry_after_s} s",
        "overloaded",
        {"Retry-After": str(retry_after_s)},
    )


def not_ready(message: str, retry_after_s: int = 5) -> ApiError:
    return ApiError(503, message, "not_ready", {"Retry-After": str(retry_after_s)})


def json_error(status: int, message: str, error_type: str, headers: dict[str, str] | None = None) -> Response:
    response = Response(
        json.dumps({"error": message, "error_type": error_type}), status=status, mimetype="application/json"
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def register_error_handlers(app: Flask) -> None:
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
