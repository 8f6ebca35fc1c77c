"""Domain errors stay free of HTTP, and the Flask layer answers each with its documented status."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from flask import Flask

from target_server.domain_errors import (
    ForwardPassFailed,
    InputTooLargeForDevice,
    NotReady,
    Overloaded,
    ServiceError,
    TimedOut,
)
from target_server.embedder import InputTooLong, UnknownTask
from target_server.errors import DOMAIN_ANSWERS, register_error_handlers
from tests.support.target import REPO

# README's error table: (status, error_type, Retry-After) for each domain error.
ANSWERS = [
    (UnknownTask("unknown task 'x'"), 400, "invalid_request", None),
    (InputTooLargeForDevice.of(9000, "CUDA out of memory"), 413, "input_too_large_for_device", None),
    (InputTooLong(1, 300, 256), 422, "input_too_long", None),
    (Overloaded.retry_after(3), 429, "overloaded", "3"),
    (ForwardPassFailed("forward pass failed: ValueError"), 500, "internal_error", None),
    (NotReady.because("loading"), 503, "not_ready", "5"),
    (TimedOut.after(2.5), 503, "timeout", "5"),
]

HTTP_MODULES = ("flask", "werkzeug")


def test_batching_and_domain_errors_import_no_web_framework(spawn: None) -> None:
    script = f"""
import json, pkgutil, sys
import target_server.batching, target_server.domain_errors
names = ["target_server.domain_errors"] + [
    m.name for m in pkgutil.walk_packages(target_server.batching.__path__, "target_server.batching.")
]
for name in names:
    __import__(name)
web = sorted(m for m in sys.modules if m.partition(".")[0] in {HTTP_MODULES!r})
print(json.dumps({{"modules": names, "web": web}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    found = json.loads(result.stdout)
    assert "target_server.batching.base" in found["modules"] and len(found["modules"]) >= 5
    assert found["web"] == []


def test_every_domain_error_has_an_http_answer() -> None:
    assert set(ServiceError.__subclasses__()) <= set(DOMAIN_ANSWERS)
    assert {type(error) for error, *_ in ANSWERS} == set(DOMAIN_ANSWERS)


@pytest.mark.parametrize(("error", "status", "error_type", "retry_after"), ANSWERS)
def test_domain_error_becomes_its_status_and_json(error, status, error_type, retry_after) -> None:
    app = Flask(__name__)
    register_error_handlers(app)

    @app.get("/fail")
    def fail():
        raise error

    response = app.test_client().get("/fail")
    assert response.status_code == status
    assert response.json == {"error": str(error), "error_type": error_type}
    assert response.headers.get("Retry-After") == retry_after
