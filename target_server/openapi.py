"""``GET /openapi.json``: the server's HTTP API as an OpenAPI 3.1 document, written by hand.

Limits come from the running server's settings (inputs per request, embedding dimensions), so
the document describes this server, not a generic one. Tests keep it true: every route is in it,
real answers validate against it, and a schemathesis run fuzzes the real server with it.
"""

from __future__ import annotations

from typing import Any

from target_server.config import ServerConfig

JSON = "application/json"

# Which error kinds each status carries (the error table of docs/guides/target-server.md); werkzeug's own are 404/405/413.
ERROR_TYPES: dict[int, tuple[str, ...]] = {
    400: ("invalid_request",),
    401: ("unauthorized",),
    413: ("payload_too_large", "too_many_inputs", "input_too_large_for_device"),
    415: ("unsupported_media_type",),
    422: ("input_too_long",),
    429: ("overloaded",),
    500: ("internal_error",),
    503: ("not_ready", "timeout"),
}
ERROR_MEANINGS = {
    400: "malformed body, wrong types, empty input, bad option",
    401: "API key missing or wrong (only when the server runs with --api-key)",
    413: "body or input count over the limit, or one input too large for device memory even alone",
    415: "Content-Type is not application/json",
    422: "an input over the model's token limit with truncate: false",
    429: "admission control is full; retry after Retry-After seconds",
    500: "a bug (logged); the server stays up",
    503: "model not ready, or no result within the request timeout",
}
TIMING_HEADERS = {
    "x-queue-time": "milliseconds from admission to the first forward pass",
    "x-inference-time": "milliseconds from the first to the last forward pass of the request",
    "x-total-time": "milliseconds the server spent on the request",
    "x-compute-tokens": "tokens embedded (the usage count)",
}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """The server treats an explicit null as "not given"."""
    return {"anyOf": [schema, {"type": "null"}]}


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "required": True, "schema": {"type": "string"}}


def _json_body(schema_name: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _error(status: int) -> dict[str, Any]:
    schema = {
        "allOf": [
            {"$ref": "#/components/schemas/Error"},
            {"properties": {"error_type": {"enum": list(ERROR_TYPES[status])}}},
        ]
    }
    answer: dict[str, Any] = {"description": ERROR_MEANINGS[status], "content": {JSON: {"schema": schema}}}
    if status in (429, 503):
        answer["headers"] = {"Retry-After": _header("seconds after which a retry may succeed")}
    return answer


def _embedding_operation(operation_id: str, summary: str, request: str, response: str) -> dict[str, Any]:
    statuses = (400, 401, 413, 415, 422, 429, 500, 503)
    timing = {name: _header(meaning) for name, meaning in TIMING_HEADERS.items()}
    return {
        "operationId": operation_id,
        "summary": summary,
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{request}"}}},
        },
        "responses": {
            "200": _json_body(response, "the embeddings, in input order", timing),
            **{str(status): _error(status) for status in statuses},
        },
    }


def _schemas(config: ServerConfig, dimensions: int | None) -> dict[str, Any]:
    texts = {
        "type": "array",
        "items": {"type": "string"},
        "minItems": 1,
        "maxItems": config.max_inputs_per_request,
    }
    text_object = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}
    one_input = {"anyOf": [{"type": "string"}, text_object]}
    dims: dict[str, Any] = {"type": "integer", "minimum": 1}
    if dimensions is not None:
        dims["maximum"] = dimensions
    encoding = {"enum": ["float", "base64"]}
    return {
        "Error": {
            "type": "object",
            "required": ["error", "error_type"],
            "properties": {"error": {"type": "string"}, "error_type": {"type": "string"}},
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "description": '"ok", "loading" or the load error'}},
        },
        "Info": {
            "type": "object",
            "required": ["status", "batching", "limits"],
            "properties": {
                "status": {"type": "string"},
                "model": {"type": "string"},
                "dimensions": {"type": "integer"},
                "max_input_tokens": {"type": "integer"},
                "device": {"type": "string"},
                "dtype": {"type": "string"},
                "tasks": _nullable({"type": "array", "items": {"type": "string"}}),
                "engine": {
                    "type": "string",
                    "enum": ["torch", "onnx", "openvino"],
                    "description": "what runs the forward pass (--engine)",
                },
                "quantization": _nullable({"type": "string", "enum": ["int8"]}),
                "engine_detail": _nullable(
                    {
                        "type": "string",
                        "description": "the runtime, its version and the exported file it runs",
                    }
                ),
                "attention": {
                    "type": "string",
                    "description": "how a pass treats unlike lengths (--attention): padded, or packed (and "
                    "its kernel: nested, or runs of one length)",
                },
                "hardware": {
                    "type": "object",
                    "description": "what serves the model; run.json records it, and prices are matched to it",
                    "required": ["device", "gpu", "gpus", "cpu", "cpus", "torch_threads"],
                    "properties": {
                        "device": {"type": "string", "enum": ["cpu", "cuda"]},
                        "gpu": _nullable({"type": "string"}),
                        "gpus": {"type": "integer", "minimum": 0},
                        "cpu": {"type": "string"},
                        "cpus": {"type": "integer", "minimum": 1},
                        "torch_threads": {"type": "integer", "minimum": 1},
                    },
                },
                "batching": {"type": "object"},
                "metrics": {
                    "type": "object",
                    "description": "GET /metrics: its path, and the port of its own listener (serve "
                    "--metrics-port; null: none), which answers while every request thread is busy",
                },
                "limits": {"type": "object"},
                "frontends": {
                    "type": "object",
                    "description": "the processes that take HTTP requests (serve --frontends): how many, and "
                    "the pid of the one that answered; with more than one, a model process of its own "
                    "runs the batcher, and /metrics adds up every front end",
                    "required": ["processes", "this_pid"],
                    "properties": {
                        "processes": {"type": "integer", "minimum": 1},
                        "this_pid": {"type": "integer"},
                    },
                },
            },
        },
        "EmbedRequest": {
            "type": "object",
            "required": ["texts"],
            "properties": {
                "texts": texts,
                "truncate": _nullable({"type": "boolean", "default": True}),
            },
        },
        "EmbedResponse": {
            "type": "object",
            "required": ["embeddings", "usage", "model"],
            "properties": {
                "embeddings": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
                "usage": {
                    "type": "object",
                    "required": ["total_tokens"],
                    "properties": {"total_tokens": {"type": "integer", "minimum": 0}},
                },
                "model": {"type": "string"},
            },
        },
        "EmbeddingsRequest": {
            "type": "object",
            "required": ["input"],
            "properties": {
                "input": {
                    "anyOf": [
                        one_input,
                        {**texts, "items": one_input},
                    ]
                },
                "model": _nullable({"type": "string", "description": "accepted and ignored"}),
                "task": _nullable({"type": "string", "description": "multi-task models: the adapter"}),
                "truncate": _nullable({"type": "boolean", "default": True}),
                "normalized": _nullable({"type": "boolean", "default": True}),
                "dimensions": _nullable(dims),
                "encoding_format": _nullable(encoding),
                "embedding_type": _nullable(encoding),
            },
        },
        "EmbeddingsResponse": {
            "type": "object",
            "required": ["object", "data", "model", "usage"],
            "properties": {
                "object": {"const": "list"},
                "data": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["object", "index", "embedding"],
                        "properties": {
                            "object": {"const": "embedding"},
                            "index": {"type": "integer", "minimum": 0},
                            "embedding": {
                                "anyOf": [
                                    {"type": "array", "items": {"type": "number"}},
                                    {"type": "string", "contentEncoding": "base64"},
                                ]
                            },
                        },
                    },
                },
                "model": {"type": "string"},
                "usage": {
                    "type": "object",
                    "required": ["prompt_tokens", "total_tokens"],
                    "properties": {
                        "prompt_tokens": {"type": "integer", "minimum": 0},
                        "total_tokens": {"type": "integer", "minimum": 0},
                    },
                },
            },
        },
    }


def openapi_document(config: ServerConfig, dimensions: int | None) -> dict[str, Any]:
    """The document for a server with these settings; ``dimensions`` is None while the model loads."""
    openai = "OpenAI / Jina embeddings: input as a string, {text} or a list of them"
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "embed-bench target server",
            "version": "1",
            "description": "A sentence-transformers embedding model behind continuous micro-batching. "
            "Every error is JSON {error, error_type}.",
        },
        "paths": {
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "readiness: 200 once the model is loaded and the batcher alive",
                    "security": [],
                    "responses": {
                        "200": _json_body("Health", "ready"),
                        "503": _json_body(
                            "Health",
                            "loading, the load failed, or the batcher stopped",
                            {"Retry-After": _header("seconds to wait")},
                        ),
                    },
                }
            },
            "/info": {
                "get": {
                    "operationId": "info",
                    "summary": "model, dimensions, device, batching mode and limits",
                    "responses": {"200": _json_body("Info", "the server's description"), "401": _error(401)},
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus text format",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "counters, gauges and histograms (docs/reference/http-api.md lists them)",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "this document",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {JSON: {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
            "/embed": {
                "post": _embedding_operation(
                    "embed",
                    "the study's endpoint: texts in, vectors as encode() returns them",
                    "EmbedRequest",
                    "EmbedResponse",
                )
            },
            "/v1/embeddings": {
                "post": _embedding_operation("embeddings", openai, "EmbeddingsRequest", "EmbeddingsResponse")
            },
            "/embeddings": {
                "post": _embedding_operation(
                    "embeddings_unversioned",
                    f"{openai} (same as /v1/embeddings)",
                    "EmbeddingsRequest",
                    "EmbeddingsResponse",
                )
            },
        },
        "components": {"schemas": _schemas(config, dimensions)},
    }
    if config.api_key is not None:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document
