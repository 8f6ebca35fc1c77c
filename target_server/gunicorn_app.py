"""gunicorn as a library: one gthread worker that builds the Flask app (and loads the model) itself."""

from __future__ import annotations

import logging
from typing import Any

from gunicorn.app.base import BaseApplication


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
            format="%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
        )
        from target_server.app import create_app, service_of

        app = create_app(self.overrides)
        port = self.options.get("metrics_port")
        if port is not None:
            self._serve_metrics(service_of(app), port)
        return app

    def _serve_metrics(self, service: Any, port: int) -> None:
        """``/metrics`` on a listener of its own (prometheus-client's, a daemon thread of this worker):
        the request threads may all be busy with queued work exactly when a scrape matters most."""
        from prometheus_client import start_wsgi_server

        host = self.options["bind"].rsplit(":", 1)[0].strip("[]")
        server, _thread = start_wsgi_server(port, addr=host, registry=service.metrics.registry)
        service.metrics_port = server.server_port
        logging.getLogger("target_server").info("metrics also on %s:%d/metrics", host, service.metrics_port)
