"""The bundled target server: Flask + sentence-transformers with continuous micro-batching."""

from target_server.app import create_app, service_of

__all__ = ["create_app", "service_of"]
