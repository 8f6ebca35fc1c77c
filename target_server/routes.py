"""HTTP routes (a Blueprint): parse, call the service, render JSON with timing headers."""

from __future__ import annotations

import hmac
import time

from flask import Blueprint, Response, g, request

from target_server.errors import unauthorized
from target_server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from target_server.openapi import openapi_document
from target_server.parsing import parse_embed, parse_openai, read_json_object
from target_server.responses import json_response as _json
from target_server.responses import vector_rows
from target_server.serving import EmbedResult, current_service
from target_server.tracing import step

bp = Blueprint("embed", __name__)

# Probes and scrapers must work without the key (Kubernetes readiness, Prometheus).
# The API description is open too: it holds no secret and clients read it before they have a key.
OPEN_ENDPOINTS = frozenset({"embed.health", "embed.metrics", "embed.openapi"})
TRACED_ENDPOINTS = frozenset({"embed.embed", "embed.openai_embeddings"})  # with tracing on: a span each


def _timing_headers(result: EmbedResult) -> dict[str, str]:
    return {
        "x-queue-time": f"{result.queue_ms:.2f}",
        "x-inference-time": f"{result.inference_ms:.2f}",
        "x-total-time": f"{(time.perf_counter() - g.started) * 1e3:.2f}",
        "x-compute-tokens": str(result.tokens),
    }


@bp.before_request
def _authenticate() -> None:
    g.started = time.perf_counter()
    tracing = current_service().tracing
    g.trace = None
    if tracing is not None and request.endpoint in TRACED_ENDPOINTS:
        g.trace = tracing.begin(request.headers, request.method, request.path)
    key = current_service().config.api_key
    if key is None or request.endpoint in OPEN_ENDPOINTS:
        return
    header = request.headers.get("Authorization", "")
    if not header:
        raise unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise unauthorized("invalid API key")


@bp.after_app_request
def _count(response: Response) -> Response:
    endpoint = (request.endpoint or "unknown").removeprefix("embed.")
    current_service().count_request(endpoint, response.status_code)
    trace = g.get("trace")
    if trace is not None:
        trace.finish(response.status_code)
    return response


@bp.get("/health")
def health() -> Response:
    service = current_service()
    if service.healthy:
        return _json({"status": "ok"})
    status = service.state if service.state != "ready" else "batcher stopped"
    return _json({"status": status}, 503, {"Retry-After": "5"})


@bp.get("/info")
def info() -> Response:
    return _json(current_service().info())


@bp.get("/metrics")
def metrics() -> Response:
    return Response(current_service().render_metrics(), content_type=METRICS_CONTENT_TYPE)


@bp.get("/openapi.json")
def openapi() -> Response:
    service = current_service()
    info = service.model_info
    dimensions = info.dimensions if info is not None else None
    return _json(openapi_document(service.config, dimensions))


@bp.post("/embed")
def embed() -> Response:
    service = current_service()
    model = service.require_ready().name
    trace = g.trace
    with step(trace, "parse"):
        parsed = parse_embed(read_json_object(request), service.config.max_inputs_per_request)
    result = service.embed(parsed, trace)
    with step(trace, "encode"):
        body = {
            "embeddings": vector_rows(result.vectors, "float"),
            "usage": {"total_tokens": result.tokens},
            "model": model,
        }
        return _json(body, headers=_timing_headers(result))


@bp.post("/v1/embeddings")
@bp.post("/embeddings")
def openai_embeddings() -> Response:
    service = current_service()
    info = service.require_ready()
    trace = g.trace
    with step(trace, "parse"):
        parsed = parse_openai(
            read_json_object(request), service.config.max_inputs_per_request, info.dimensions
        )
    result = service.embed(parsed, trace)
    with step(trace, "encode"):
        data = [
            {"object": "embedding", "index": index, "embedding": vector}
            for index, vector in enumerate(vector_rows(result.vectors, parsed.encoding))
        ]
        body = {
            "object": "list",
            "model": info.name,
            "data": data,
            "usage": {"prompt_tokens": result.tokens, "total_tokens": result.tokens},
        }
        return _json(body, headers=_timing_headers(result))
