"""The Flask application factories: settings, error handlers, routes, and the service behind them.

``create_app`` serves the model in this process (EmbeddingService); ``create_frontend_app`` is one
front end of ``serve --frontends N`` (FrontendService), whose model runs in a process of its own.
Each imports its service when called, so a front end's process never imports torch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from flask import Flask

from target_server.config import ServerConfig, resolve_config
from target_server.errors import register_error_handlers
from target_server.routes import bp
from target_server.serving import EXTENSION

if TYPE_CHECKING:
    from target_server.embedder import SentenceTransformerEmbedder
    from target_server.model_link import LinkAddress
    from target_server.service import EmbeddingService
    from target_server.tracing import ServerTracing


def _flask_app(overrides: Mapping[str, Any] | None) -> tuple[Flask, ServerConfig]:
    """Settings: defaults, then ``EMBED_BENCH_*`` env vars, then ``overrides``."""
    app = Flask(__name__)
    mapping, config = resolve_config(overrides)
    app.config.from_mapping(mapping)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    logging.getLogger("target_server").setLevel(logging.INFO)
    register_error_handlers(app)
    app.register_blueprint(bp)
    return app, config


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
    from target_server.service import EmbeddingService

    app, config = _flask_app(overrides)
    EmbeddingService(config, embedder, tracing).init_app(app)
    return app


def create_frontend_app(
    overrides: Mapping[str, Any] | None,
    address: LinkAddress,
    *,
    frontends: int,
    tracing: ServerTracing | None = None,
    on_lost: Callable[[str], None] | None = None,
) -> Flask:
    """One front end of ``serve --frontends N``: it parses, tokenizes and encodes; the model process
    at ``address`` batches and runs the model. ``tracing`` as for :func:`create_app`; ``on_lost``:
    what to do once the connection to the model process is gone (ModelLink)."""
    from target_server.frontend import FrontendService

    app, config = _flask_app(overrides)
    service = FrontendService.connect(config, address, frontends=frontends, tracing=tracing, on_lost=on_lost)
    service.init_app(app)
    return app


def service_of(app: Flask) -> EmbeddingService:
    return app.extensions[EXTENSION]
