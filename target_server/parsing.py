"""Request bodies to :class:`EmbedRequest`, with a precise 4xx for every way a body can be wrong.

Both endpoints share one validated shape: ``/embed`` (the study's) and ``/v1/embeddings``
(OpenAI/Jina). Nothing here touches the model, so a bad request costs the server almost nothing.
Bodies are parsed by orjson straight from bytes: it validates UTF-8, rejects lone surrogates and
NaN/Infinity, and stops at 1024 levels of nesting, each a 400 here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from flask import Request

from target_server.errors import ApiError, bad_request, too_large, unsupported_media_type

ENCODINGS = ("float", "base64")


@dataclass(frozen=True)
class EmbedRequest:
    texts: list[str]
    truncate: bool = True
    task: str | None = None
    # None: the model's own output (what SentenceTransformer.encode returns); True: L2-normalized.
    normalized: bool | None = None
    dimensions: int | None = None
    encoding: str = "float"


def read_json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object: 415 for another content type, 413 over the size limit, else 400."""
    if request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
        raise unsupported_media_type(
            f"Content-Type must be application/json, got {request.mimetype or 'none'!r}"
        )
    raw = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH before reading it all
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise bad_request(_why_not_json(raw, error)) from None
    if not isinstance(body, dict):
        raise bad_request(f"body must be a JSON object, got {type(body).__name__}")
    return body


def _why_not_json(raw: bytes, error: orjson.JSONDecodeError) -> str:
    """Why orjson refused a body (e.g. "depth limit exceeded"); invalid UTF-8 names its first bad byte."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"body is not valid UTF-8 (byte {bad.start})"
    return f"body is not valid JSON: {error}"


def _optional(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    # JSON has one number type: 64.0 is the integer 64 (as JSON Schema's "integer" says).
    if isinstance(value, float) and value.is_integer() and int in _as_tuple(kind):
        value = int(value)
    # bool is an int in Python; JSON true must not pass as a number (or 1 as a boolean).
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        expected = " or ".join(t.__name__ for t in _as_tuple(kind))
        raise bad_request(f"'{name}' must be {expected}, got {type(value).__name__}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _check_texts(texts: list[Any], field: str, max_inputs: int) -> list[str]:
    if not texts:
        raise bad_request(f"'{field}' must not be empty")
    if len(texts) > max_inputs:
        raise too_large(
            f"'{field}' has {len(texts)} items; at most {max_inputs} per request", "too_many_inputs"
        )
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise bad_request(f"'{field}[{index}]' must be a string, got {type(text).__name__}")
    return texts


def parse_embed(body: dict[str, Any], max_inputs: int) -> EmbedRequest:
    """``POST /embed``: ``{"texts": [str, ...], "truncate": true}``."""
    if "texts" not in body:
        raise bad_request("missing field 'texts' (a list of strings)")
    texts = body["texts"]
    if not isinstance(texts, list):
        raise bad_request(f"'texts' must be a list of strings, got {type(texts).__name__}")
    return EmbedRequest(
        texts=_check_texts(texts, "texts", max_inputs),
        truncate=_optional(body, "truncate", bool, True),
    )


def parse_openai(body: dict[str, Any], max_inputs: int, dimensions: int) -> EmbedRequest:
    """``POST /v1/embeddings``: the OpenAI / Jina shape (contracts.md section 1)."""
    if "input" not in body:
        raise bad_request("missing field 'input' (a string or a list of strings)")
    raw = body["input"]
    items = raw if isinstance(raw, list) else [raw]
    texts = [item["text"] if isinstance(item, dict) and "text" in item else item for item in items]
    _optional(body, "model", str)
    requested = _optional(body, "dimensions", int)
    if requested is not None and not 1 <= requested <= dimensions:
        raise bad_request(f"'dimensions' must be between 1 and {dimensions}, got {requested}")
    # Both spellings are checked, even where the other one decides: a bad value is never ignored.
    encodings = [_optional(body, name, str) for name in ("encoding_format", "embedding_type")]
    for encoding in encodings:
        if encoding is not None and encoding not in ENCODINGS:
            raise ApiError(
                400, f"encoding {encoding!r} is not supported; use one of {ENCODINGS}", "invalid_request"
            )
    encoding = next((given for given in encodings if given is not None), "float")
    return EmbedRequest(
        texts=_check_texts(texts, "input", max_inputs),
        truncate=_optional(body, "truncate", bool, True),
        task=_optional(body, "task", str),
        normalized=_optional(body, "normalized", bool, True),
        dimensions=requested,
        encoding=encoding,
    )
