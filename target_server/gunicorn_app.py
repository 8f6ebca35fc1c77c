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
        from target_server.app import create_app

        return create_app(self.overrides)
