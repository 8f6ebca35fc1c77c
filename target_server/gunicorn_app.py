"""gunicorn as a library: one gthread worker that builds the Flask app (and loads the model) itself, or,
with ``serve --frontends N``, N workers that parse and tokenize for a model process (model_link.py)."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

from gunicorn.app.base import BaseApplication

from target_server.config import LOG_FORMAT


class GunicornServer(BaseApplication):
    def __init__(self, overrides: dict[str, Any], options: dict[str, Any]) -> None:
        self.overrides = overrides
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            # Settings of newer gunicorn releases (e.g. control_socket_disable) are skipped on older ones.
            if value is not None and key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self):
        """Runs in the worker process (no preload), so CUDA is initialized after the fork."""
        logging.basicConfig(
            level=self.options.get("loglevel", "info").upper(),
            format=LOG_FORMAT,
        )
        link = self.options.get("model_link")
        if link is not None:  # serve --frontends N: this worker parses and tokenizes, the model is elsewhere
            from target_server.app import create_frontend_app

            return create_frontend_app(
                self.overrides, link, frontends=self.options["workers"], on_lost=_exit_worker
            )
        from target_server.app import create_app, service_of
        from target_server.metrics import serve_metrics

        app = create_app(self.overrides)
        port = self.options.get("metrics_port")
        if port is not None:
            service = service_of(app)
            service.metrics_port = serve_metrics(
                service.metrics.registry, bind_host(self.options["bind"]), port
            )
        return app


def _exit_worker(reason: str) -> None:
    """A front end whose link to the model process is gone exits, gracefully (its requests are
    answered 503 meanwhile): gunicorn starts another, which connects again, or, with the model
    process gone for good, cannot boot, and serve stops."""
    logging.getLogger("target_server").error("front end exits (%s); gunicorn replaces it", reason)
    os.kill(os.getpid(), signal.SIGTERM)


def bind_host(bind: str) -> str:
    """The host of a gunicorn bind address: ``127.0.0.1:8000`` -> 127.0.0.1, ``[::1]:8000`` -> ::1."""
    return bind.rsplit(":", 1)[0].strip("[]")
