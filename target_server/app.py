"""``create_app()``: the Flask application factory (settings, error handlers, routes, service)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from target_server.config import resolve_config
from target_server.embedder import SentenceTransformerEmbedder
from target_server.errors import register_error_handlers
from target_server.routes import bp
from target_server.service import EmbeddingService
from target_server.serving import EXTENSION
from target_server.tracing import ServerTracing


def create_app(
    overrides: Mapping[str, Any] | None = None,
    *,
    embedder: SentenceTransformerEmbedder | None = None,
    tracing: ServerTracing | None = None,
) -> Flask:
    """Build the server. Settings: defaults, then ``EMBED_BENCH_*`` env vars, then ``overrides``.

    ``embedder`` lets tests share one loaded model between apps; normally the service loads it.
    ``tracing`` lets tests keep spans in memory; normally ``--otel`` and OTEL_* decide (tracing.py).
    """
    app = Flask(__name__)
    mapping, config = resolve_config(overrides)
    app.config.from_mapping(mapping)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    logging.getLogger("target_server").setLevel(logging.INFO)
    register_error_handlers(app)
    app.register_blueprint(bp)
    EmbeddingService(config, embedder, tracing).init_app(app)
    return app


def service_of(app: Flask) -> EmbeddingService:
    return app.extensions[EXTENSION]
