"""The bundled target server: Flask + sentence-transformers with continuous micro-batching.

``create_app`` is imported lazily so that light users of this package (``target_server.launcher``
in ``embed-bench run``) do not pay for importing torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "service_of"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from target_server import app

        return getattr(app, name)
    raise AttributeError(f"module 'target_server' has no attribute {name!r}")
