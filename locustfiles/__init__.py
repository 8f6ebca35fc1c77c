"""Locust side of embed-bench: one locustfile per backend, token-exact payloads, grid shapes.

This package's ``__init__`` stays free of Locust imports on purpose: importing ``locust`` monkey-patches
the whole process with gevent, and the ``embed-bench run`` command only needs to know which
locustfile and user class a backend name stands for before it starts ``locust`` as a subprocess.
"""

from __future__ import annotations

from locustfiles.backends import BACKENDS, JINA_API_URL, LOCUSTFILES_DIR, Backend

__all__ = ["BACKENDS", "JINA_API_URL", "LOCUSTFILES_DIR", "Backend"]
