"""Contract double of the Jina Embeddings API (``contracts.md`` section 1), also a standalone server:

    .venv/bin/python -m tests.doubles.jina_api --port 8081 --api-key jina_local --fault rate_tokens:5

Checks every request as the API documents it: ``POST /v1/embeddings``; ``Authorization: Bearer
<key>`` with a key it knows (``jina_`` prefix); ``Content-Type`` and ``Accept`` ``application/json``;
``model`` known; ``input`` a string, ``{"text": ...}`` or a list of those, 1..2048 items; ``task``,
``dimensions``, ``late_chunking``, ``embedding_type``, ``normalized``, ``truncate`` of the documented
types and values, nothing else; no input over 8192 tokens unless ``truncate`` is true. A wrong
request gets the API's error (401 ``AUTH_*``, 400 ``INPUT_MODEL_NOT_FOUND``, 422 validation ...) and is
written to the ledger as a violation. A right one gets ``{"model", "object": "list", "usage",
"data"}`` in input order, with ``X-RateLimit-Remaining-*`` headers; usage counts tokens with the
configured tokenizer, special tokens excluded unless ``--count-special-tokens``.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, jsonify, request

from tests.doubles.common import (
    FaultSchedule,
    Ledger,
    TokenCounter,
    VectorMaker,
    add_ledger_route,
    common_arguments,
    pause,
    serve,
)

TASKS = {"retrieval.query", "retrieval.passage", "text-matching", "classification", "separation"}
EMBEDDING_TYPES = {"float", "base64", "binary", "ubinary"}
OPTIONAL_FIELDS = {"task", "dimensions", "late_chunking", "embedding_type", "normalized", "truncate"}
MAX_INPUTS = 2048
MAX_TOKENS = 8192
# name -> (status, code, detail): the API's documented failures.
FAULTS: dict[str, tuple[int, str, str]] = {
    "rate_requests": (429, "RATE_REQUEST_LIMIT_EXCEEDED", "Request rate limit exceeded"),
    "rate_tokens": (429, "RATE_TOKEN_LIMIT_EXCEEDED", "Token rate limit exceeded"),
    "rate_concurrency": (429, "RATE_CONCURRENCY_LIMIT_EXCEEDED", "Concurrency limit exceeded"),
    "balance": (402, "AUTHZ_INSUFFICIENT_BALANCE", "Insufficient balance"),
    "internal": (500, "INTERNAL_ERROR", "Internal error"),
    "unavailable": (503, "SERVICE_UNAVAILABLE", "Service unavailable"),
    "gateway_timeout": (504, "SERVICE_TIMEOUT", "Service timeout"),
}
BODY_FAULTS = ("hang", "short", "nan")  # a slow answer; 200s with one embedding missing / a NaN


@dataclass
class JinaDoubleConfig:
    api_keys: frozenset[str] = frozenset({"jina_double_key"})
    models: frozenset[str] = frozenset({"jina-embeddings-v3"})
    dimensions: int = 1024
    tokenizer: str = ""
    count_special_tokens: bool = False
    balance_status: int = 402  # sources disagree between 402 and 403
    retry_after: float | None = None  # seconds in a Retry-After header on 429s; None: no header
    latency_ms: float = 0.0
    hang_seconds: float = 30.0
    faults: Sequence[Any] = field(default_factory=tuple)


class Rejection(Exception):
    def __init__(self, status: int, detail: str, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.detail, self.code, self.extra = status, detail, code, extra


def _error(status: int, detail: str, code: str | None = None, **extra: Any) -> Response:
    body: dict[str, Any] = {"detail": detail, "request_id": uuid.uuid4().hex, **extra}
    if code:
        body["code"] = code
    response = jsonify(body)
    response.status_code = status
    return response


def _check_auth(keys: frozenset[str]) -> None:
    header = request.headers.get("Authorization")
    if header is None:
        raise Rejection(401, "No API key provided", "AUTH_MISSING_API_KEY")
    scheme, _, key = header.partition(" ")
    if scheme != "Bearer" or not key.startswith("jina_"):
        raise Rejection(401, "Invalid API key format", "AUTH_INVALID_FORMAT")
    if key not in keys:
        raise Rejection(401, "Invalid API key", "AUTH_INVALID_API_KEY")


def _validation(field_name: str, message: str, value: Any) -> Rejection:
    return Rejection(
        422,
        f"Validation error: {field_name}: {message}",
        errors=[{"field": field_name, "message": message, "type": "value_error", "input": repr(value)[:80]}],
    )


def _texts(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise _validation("input", "must not be empty", value)
    if len(items) > MAX_INPUTS:
        raise Rejection(
            400, f'"input" length {len(items)} is larger than the largest allowed size {MAX_INPUTS}'
        )
    texts = []
    for item in items:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, dict) and set(item) == {"text"} and isinstance(item["text"], str):
            texts.append(item["text"])
        else:
            raise _validation("input", "items must be strings or {'text': str}", item)
    return texts


def _check_body(
    config: JinaDoubleConfig, counter: TokenCounter
) -> tuple[dict[str, Any], list[str], list[int]]:
    content_type = request.headers.get("Content-Type", "")
    if content_type.split(";")[0].strip() != "application/json":
        raise _validation("Content-Type", "must be application/json", content_type)
    if request.headers.get("Accept", "").split(";")[0].strip() not in ("application/json", "*/*"):
        raise _validation("Accept", "must be application/json", request.headers.get("Accept"))
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise _validation("body", "must be a JSON object", request.get_data()[:80])
    unknown = set(body) - {"model", "input"} - OPTIONAL_FIELDS
    if unknown:
        raise _validation(sorted(unknown)[0], "unknown field", body[sorted(unknown)[0]])
    if "model" not in body or "input" not in body:
        raise _validation("model" if "model" not in body else "input", "field required", None)
    if body["model"] not in config.models:
        raise Rejection(400, f"Model {body['model']!r} not found", "INPUT_MODEL_NOT_FOUND")
    if "task" in body and body["task"] not in TASKS:
        raise _validation("task", f"must be one of {sorted(TASKS)}", body["task"])
    dimensions = body.get("dimensions")
    if dimensions is not None and not (isinstance(dimensions, int) and 1 <= dimensions <= 1024):
        raise _validation("dimensions", "must be an integer in 1..1024", dimensions)
    for flag in ("late_chunking", "normalized", "truncate"):
        if flag in body and not isinstance(body[flag], bool):
            raise _validation(flag, "must be a boolean", body[flag])
    if body.get("embedding_type", "float") not in EMBEDDING_TYPES:
        raise _validation(
            "embedding_type", f"must be one of {sorted(EMBEDDING_TYPES)}", body["embedding_type"]
        )
    texts = _texts(body["input"])
    counts = counter.count(texts)
    if not body.get("truncate", False):
        longest = max(counts)
        if longest > MAX_TOKENS:
            raise _validation("input", f"an input has {longest} tokens, more than {MAX_TOKENS}", longest)
    return body, texts, counts


def create_app(config: JinaDoubleConfig) -> Flask:
    app = Flask("jina_api_double")
    ledger = Ledger()
    schedule = FaultSchedule(config.faults, [*FAULTS, *BODY_FAULTS])
    counter = TokenCounter(config.tokenizer, config.count_special_tokens)
    vectors = VectorMaker(config.dimensions)
    app.extensions["ledger"] = ledger
    add_ledger_route(app, ledger)

    @app.post("/v1/embeddings")
    def embeddings() -> Response:
        number = ledger.arrive()
        pause(config.latency_ms)
        try:
            _check_auth(config.api_keys)
            body, texts, counts = _check_body(config, counter)
        except Rejection as rejection:
            ledger.violation(f"{rejection.status} {rejection.code or ''} {rejection.detail}".strip())
            return _error(rejection.status, rejection.detail, rejection.code, **rejection.extra)
        fault = schedule.pick(number)
        if fault in FAULTS:
            ledger.fault(fault)
            status, code, detail = FAULTS[fault]
            response = _error(config.balance_status if fault == "balance" else status, detail, code)
            if status == 429 and config.retry_after is not None:
                response.headers["Retry-After"] = f"{config.retry_after:g}"
            return response
        if fault == "hang":
            ledger.fault(fault)
            time.sleep(config.hang_seconds)
        dimensions = body.get("dimensions") or config.dimensions
        data = [
            {"object": "embedding", "index": index, "embedding": vectors.vector(text)[:dimensions]}
            for index, text in enumerate(texts)
        ]
        if fault == "short":
            ledger.fault(fault)
            data = data[:-1]
        elif fault == "nan":
            ledger.fault(fault)
            data[0]["embedding"] = [float("nan"), *data[0]["embedding"][1:]]
        total = sum(counts)
        if fault not in ("short", "nan"):
            ledger.success(total)
        response = jsonify(
            {
                "model": body["model"],
                "object": "list",
                "usage": {"total_tokens": total, "prompt_tokens": total},
                "data": data,
            }
        )
        response.headers["X-RateLimit-Remaining-Requests"] = "499"
        response.headers["X-RateLimit-Remaining-Tokens"] = str(max(0, 1_000_000 - total))
        return response

    @app.errorhandler(404)
    @app.errorhandler(405)
    def not_found(error: Any) -> Response:
        ledger.violation(f"{error.code} {request.method} {request.path}")
        return _error(error.code, f"{request.method} {request.path} is not an endpoint of this API")

    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.doubles.jina_api", description=__doc__.split("\n")[0]
    )
    common_arguments(parser, [*FAULTS, *BODY_FAULTS])
    parser.add_argument("--api-key", action="append", default=[], help="a key it accepts (repeatable)")
    parser.add_argument("--model", action="append", default=[], help="a model it knows (repeatable)")
    parser.add_argument("--dimensions", type=int, default=1024)
    parser.add_argument("--count-special-tokens", action="store_true")
    parser.add_argument("--balance-status", type=int, choices=[402, 403], default=402)
    parser.add_argument("--retry-after", type=float, default=None, help="Retry-After seconds on 429s")
    args = parser.parse_args(argv)
    config = JinaDoubleConfig(
        api_keys=frozenset(args.api_key) or JinaDoubleConfig.api_keys,
        models=frozenset(args.model) or JinaDoubleConfig.models,
        dimensions=args.dimensions,
        tokenizer=args.tokenizer,
        count_special_tokens=args.count_special_tokens,
        balance_status=args.balance_status,
        retry_after=args.retry_after,
        latency_ms=args.latency_ms,
        hang_seconds=args.hang_seconds,
        faults=tuple(args.fault),
    )
    serve(create_app(config), args.host, args.port)


if __name__ == "__main__":
    main()
