"""The real target server for tests: re-exported from ``target_server.launcher`` (one implementation)."""

from __future__ import annotations

from pathlib import Path

from target_server.launcher import ServerFailed, free_port, http_status, running_target_server

REPO = Path(__file__).resolve().parents[2]

__all__ = ["REPO", "ServerFailed", "free_port", "http_status", "running_target_server"]
