"""Contract double of an OpenAI-compatible server that serves at the root, as Infinity does:

    .venv/bin/python -m tests.doubles.openai_root --port 8082 --model minilm

``GET /models`` lists its models (``{"object": "list", "data": [{"id": ..., "object": "model"}]}``);
``POST /embeddings`` takes ``{"model": <a listed model>, "input": str | [str, ...]}`` (``encoding_format``
and ``user`` allowed, nothing else) and answers ``{"object": "list", "data": [{"object": "embedding",
"index": i, "embedding": [...]}], "model", "usage": {"prompt_tokens", "total_tokens"}}``. There is
no ``/v1`` prefix, no ``/info`` and no ``/health``: those answer 404 ``{"detail": "Not Found"}``, as
FastAPI does. An unknown model gets 400 with Infinity's message. Every 404 and every rejected request
goes into the ledger, so a test sees which paths a client tried.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, jsonify, request

from tests.doubles.common import (
    Ledger,
    TokenCounter,
    VectorMaker,
    add_ledger_route,
    common_arguments,
    pause,
    serve,
)

ALLOWED_FIELDS = {"model", "input", "encoding_format", "user"}


@dataclass(frozen=True)
class OpenAIRootConfig:
    models: tuple[str, ...] = ("minilm",)
    dimensions: int = 384
    tokenizer: str = ""
    latency_ms: float = 0.0


def create_app(config: OpenAIRootConfig) -> Flask:
    app = Flask("openai_root_double")
    ledger = Ledger()
    counter = TokenCounter(config.tokenizer)
    vectors = VectorMaker(config.dimensions)
    app.extensions["ledger"] = ledger
    add_ledger_route(app, ledger)

    def reject(status: int, message: str) -> Response:
        ledger.violation(f"{status} {request.method} {request.path}: {message}")
        response = jsonify({"error": {"message": message, "type": "BadRequestError", "code": status}})
        response.status_code = status
        return response

    @app.get("/models")
    def models() -> Response:
        data = [
            {"id": name, "object": "model", "owned_by": "infinity", "backend": "torch"}
            for name in config.models
        ]
        return jsonify({"object": "list", "data": data})

    @app.post("/embeddings")
    def embeddings() -> Response:
        ledger.arrive()
        pause(config.latency_ms)
        body: Any = request.get_json(silent=True)
        if not isinstance(body, dict):
            return reject(422, "body is not a JSON object")
        unknown = set(body) - ALLOWED_FIELDS
        if unknown:
            return reject(422, f"unknown fields {sorted(unknown)}")
        if body.get("model") not in config.models:
            return reject(400, f"Invalid model `{body.get('model')}`, available: {list(config.models)}")
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return reject(422, "input must be a string or a non-empty list of strings")
        total = sum(counter.count(texts))
        ledger.success(total)
        data = [
            {"object": "embedding", "index": i, "embedding": vectors.vector(t)} for i, t in enumerate(texts)
        ]
        return jsonify(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": total, "total_tokens": total},
            }
        )

    @app.errorhandler(404)
    @app.errorhandler(405)
    def not_found(error: Any) -> Response:
        ledger.violation(f"{error.code} {request.method} {request.path}")
        response = jsonify({"detail": "Not Found" if error.code == 404 else "Method Not Allowed"})
        response.status_code = error.code
        return response

    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.doubles.openai_root", description=__doc__.split("\n")[0]
    )
    common_arguments(parser, [])
    parser.add_argument("--model", action="append", default=[], help="a model it serves (repeatable)")
    parser.add_argument("--dimensions", type=int, default=384)
    args = parser.parse_args(argv)
    config = OpenAIRootConfig(
        models=tuple(args.model) or OpenAIRootConfig.models,
        dimensions=args.dimensions,
        tokenizer=args.tokenizer,
        latency_ms=args.latency_ms,
    )
    serve(create_app(config), args.host, args.port)


if __name__ == "__main__":
    main()
