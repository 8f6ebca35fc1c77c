"""Contract double of the SageMaker runtime in front of the Jina container (``contracts.md`` section 2),
also a standalone server:

    .venv/bin/python -m tests.doubles.sagemaker --port 8082 --access-key AKIDLOCAL \\
        --secret-key local-secret --endpoint jina-v3 --fault throttling:4

Checks ``POST /endpoints/{EndpointName}/invocations`` (name rules, known endpoint), a SigV4
signature recomputed with botocore's own ``SigV4Auth`` over the received method, path, signed
headers and body with the double's credentials (service ``sagemaker``, its region, a fresh
``X-Amz-Date``, ``host`` signed as received, ``x-amz-content-sha256`` equal to the body's hash),
``Content-Type: application/json``, the 6,291,456-byte body limit and the container's request shape
``{"data": [{"text"}], "parameters": {"task", "dimensions", "late_chunking"}}``. It answers the
container's shape (ids, embeddings and per-item usage, no top-level usage) or the runtime's errors
with ``x-amzn-ErrorType`` and ``{"message": ...}``; container-level mistakes come back as 424
``ModelError`` with ``OriginalStatusCode`` 400, as the real endpoint wraps them.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from flask import Flask, Response, jsonify, request

from tests.doubles.common import (
    FaultSchedule,
    Ledger,
    TokenCounter,
    VectorMaker,
    add_ledger_route,
    common_arguments,
    pause,
    serve,
)

BODY_LIMIT_BYTES = 6_291_456
SERVICE = "sagemaker"
ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.sagemaker/"
TASKS = {"retrieval.query", "retrieval.passage", "text-matching", "classification", "separation"}
_PATH = re.compile(r"/endpoints/([^/]+)/invocations")
_ENDPOINT = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<credential>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})"
)
FAULTS = ("model_error", "container_timeout", "throttling", "not_ready", "internal", "unavailable", "hang")


@dataclass
class SageMakerDoubleConfig:
    access_key: str = "AKIDDOUBLEEXAMPLE"
    secret_key: str = "double-secret-key"
    session_token: str | None = None
    region: str = "us-east-1"
    endpoints: frozenset[str] = frozenset({"jina-v3"})
    account: str = "123456789012"
    dimensions: int = 1024
    tokenizer: str = ""
    max_clock_skew_s: float = 300.0
    latency_ms: float = 0.0
    hang_seconds: float = 30.0
    faults: Sequence[Any] = field(default_factory=tuple)


class Rejection(Exception):
    def __init__(self, status: int, error_type: str, message: str | None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message, self.extra = status, error_type, message, extra


def _error(status: int, error_type: str, message: str | None, **extra: Any) -> Response:
    # ModelError bodies carry Message/OriginalStatusCode/...; every other error is {"message": ...}.
    response = jsonify(extra or {"message": message})
    response.status_code = status
    response.headers["x-amzn-ErrorType"] = f"{error_type}:{ERROR_NAMESPACE}"
    response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
    return response


def _model_error(
    config: SageMakerDoubleConfig, endpoint: str, original_status: int, message: str
) -> Rejection:
    return Rejection(
        424,
        "ModelError",
        None,
        ErrorCode="CLIENT_ERROR_FROM_MODEL" if original_status < 500 else "SERVER_ERROR_FROM_MODEL",
        Message=f"Received {'client' if original_status < 500 else 'server'} error ({original_status}) from "
        f'primary with message "{message}". See CloudWatch logs for more information.',
        OriginalMessage=message,
        OriginalStatusCode=original_status,
        LogStreamArn=f"arn:aws:logs:{config.region}:{config.account}:log-group:/aws/sagemaker/Endpoints/{endpoint}",
    )


def verify_signature(config: SageMakerDoubleConfig, body: bytes) -> None:
    """Recompute the SigV4 signature with botocore's signer over what was received."""
    header = request.headers.get("Authorization")
    if not header:
        raise Rejection(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTHORIZATION.fullmatch(header.strip())
    if match is None:
        raise Rejection(
            403,
            "IncompleteSignatureException",
            "Authorization header requires Credential, SignedHeaders and Signature",
        )
    parts = match["credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise Rejection(403, "IncompleteSignatureException", f"Malformed credential {match['credential']!r}")
    access_key, scope_date, region, service, _ = parts
    if access_key != config.access_key:
        raise Rejection(
            403, "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    if service != SERVICE:
        raise Rejection(
            403, "InvalidSignatureException", f"Credential should be scoped to correct service: '{SERVICE}'."
        )
    if region != config.region:
        raise Rejection(
            403,
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region, not '{region}'.",
        )
    amz_date = request.headers.get("X-Amz-Date", "")
    try:
        signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        raise Rejection(403, "IncompleteSignatureException", "X-Amz-Date missing or malformed") from None
    if scope_date != amz_date[:8]:
        raise Rejection(403, "InvalidSignatureException", "Credential date does not match X-Amz-Date")
    skew = abs((datetime.datetime.now(datetime.UTC) - signed_at).total_seconds())
    if skew > config.max_clock_skew_s:
        raise Rejection(403, "InvalidSignatureException", "Signature expired")
    signed = match["signed"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        raise Rejection(403, "InvalidSignatureException", "host and x-amz-date must be signed")
    content_sha = request.headers.get("X-Amz-Content-SHA256")
    if content_sha is not None and content_sha != hashlib.sha256(body).hexdigest():
        raise Rejection(400, "ValidationError", "x-amz-content-sha256 does not match the body")
    if (
        config.session_token is not None
        and request.headers.get("X-Amz-Security-Token") != config.session_token
    ):
        raise Rejection(
            403, "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    missing = [name for name in signed if name not in request.headers]
    if missing:
        raise Rejection(403, "InvalidSignatureException", f"signed header(s) not received: {missing}")
    headers = {name: request.headers[name] for name in signed}
    aws_request = AWSRequest(
        method=request.method,
        url=f"http://{request.headers['Host']}{request.path}",
        data=body,
        headers=headers,
    )
    aws_request.context["timestamp"] = amz_date
    signer = SigV4Auth(
        Credentials(config.access_key, config.secret_key, config.session_token), SERVICE, region
    )
    canonical = signer.canonical_request(aws_request)
    expected = signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
    if not hmac.compare_digest(expected, match["signature"]):
        raise Rejection(
            403,
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS "
            "Secret Access Key and signing method. Consult the service documentation for details.",
        )


def _container_texts(
    config: SageMakerDoubleConfig, endpoint: str, body: bytes
) -> tuple[list[str], dict[str, Any]]:
    """The Jina container's request shape; its mistakes surface as ModelError (original 400)."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise _model_error(config, endpoint, 400, "request body is not JSON") from None
    if not isinstance(payload, dict) or set(payload) - {"data", "parameters"} or "data" not in payload:
        raise _model_error(config, endpoint, 400, "expected {'data': [...], 'parameters': {...}}")
    data = payload["data"]
    if not isinstance(data, list) or not data:
        raise _model_error(config, endpoint, 400, "'data' must be a non-empty list")
    if not all(
        isinstance(item, dict) and set(item) == {"text"} and isinstance(item["text"], str) for item in data
    ):
        raise _model_error(config, endpoint, 400, "every 'data' item must be {'text': str}")
    parameters = payload.get("parameters", {})
    if not isinstance(parameters, dict) or set(parameters) - {"task", "dimensions", "late_chunking"}:
        raise _model_error(config, endpoint, 400, "'parameters' takes task, dimensions, late_chunking")
    if parameters.get("task", "text-matching") not in TASKS:
        raise _model_error(config, endpoint, 400, f"unknown task {parameters.get('task')!r}")
    dimensions = parameters.get("dimensions")
    if dimensions is not None and not (isinstance(dimensions, int) and 1 <= dimensions <= 1024):
        raise _model_error(config, endpoint, 400, "'dimensions' must be null or 1..1024")
    if not isinstance(parameters.get("late_chunking", False), bool):
        raise _model_error(config, endpoint, 400, "'late_chunking' must be a boolean")
    return [item["text"] for item in data], parameters


def _fault_response(config: SageMakerDoubleConfig, endpoint: str, fault: str) -> Response:
    if fault == "model_error":
        rejection = _model_error(
            config, endpoint, 500, "CUDA error: an illegal memory access was encountered"
        )
        return _error(rejection.status, rejection.error_type, None, **rejection.extra)
    if fault == "container_timeout":
        return _error(
            424,
            "ModelError",
            None,
            ErrorCode="INTERNAL_FAILURE_FROM_MODEL",
            Message="Your invocation timed out while waiting for a response from container primary. Review the "
            "latency metrics for each container in Amazon CloudWatch, resolve the issue, and try again.",
            LogStreamArn=f"arn:aws:logs:{config.region}:{config.account}:log-group:/aws/sagemaker/Endpoints/{endpoint}",
        )
    if fault == "throttling":
        return _error(400, "ThrottlingException", None)
    if fault == "not_ready":
        return _error(429, "ModelNotReadyException", "Model is not ready to serve requests")
    if fault == "internal":
        return _error(500, "InternalFailure", "An internal failure occurred")
    return _error(503, "ServiceUnavailable", "Service is unavailable")


def create_app(config: SageMakerDoubleConfig) -> Flask:
    app = Flask("sagemaker_double")
    app.config["MAX_CONTENT_LENGTH"] = None
    ledger = Ledger()
    schedule = FaultSchedule(config.faults, FAULTS)
    counter = TokenCounter(config.tokenizer)
    vectors = VectorMaker(config.dimensions)
    app.extensions["ledger"] = ledger
    add_ledger_route(app, ledger)

    @app.post("/endpoints/<path:name>/invocations")
    def invoke(name: str) -> Response:
        number = ledger.arrive()
        pause(config.latency_ms)
        body = request.get_data(cache=False)
        try:
            if len(body) > BODY_LIMIT_BYTES:
                raise Rejection(
                    400, "ValidationError", f"Request body is {len(body)} bytes, over {BODY_LIMIT_BYTES}"
                )
            verify_signature(config, body)
            if len(name) > 63 or not _ENDPOINT.fullmatch(name):
                raise Rejection(400, "ValidationError", f"Invalid endpoint name {name!r}")
            if name not in config.endpoints:
                raise Rejection(
                    400, "ValidationError", f"Endpoint {name} of account {config.account} not found."
                )
            if request.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
                raise _model_error(config, name, 415, "Content-Type must be application/json")
            texts, parameters = _container_texts(config, name, body)
        except Rejection as rejection:
            ledger.violation(
                f"{rejection.status} {rejection.error_type} {rejection.message or rejection.extra}"
            )
            return _error(rejection.status, rejection.error_type, rejection.message, **rejection.extra)
        fault = schedule.pick(number)
        if fault == "hang":
            ledger.fault(fault)
            time.sleep(config.hang_seconds)
        elif fault is not None:
            ledger.fault(fault)
            return _fault_response(config, name, fault)
        dimensions = parameters.get("dimensions") or config.dimensions
        counts = counter.count(texts)
        data = []
        for text, count in zip(texts, counts, strict=True):
            item_id = uuid.uuid4().hex
            data.append(
                {
                    "id": item_id,
                    "embedding": vectors.vector(text)[:dimensions],
                    "usage": {"id": item_id, "total_tokens": count},
                }
            )
        ledger.success(sum(counts))
        response = jsonify(
            {
                "data": data,
                "parameters": {
                    "task": parameters.get("task", "text-matching"),
                    "dimensions": float(dimensions),
                    "late_chunking": parameters.get("late_chunking", False),
                },
            }
        )
        response.headers["x-Amzn-Invoked-Production-Variant"] = "AllTraffic"
        return response

    @app.errorhandler(404)
    @app.errorhandler(405)
    def unknown_operation(error: Any) -> Response:
        ledger.violation(f"{error.code} {request.method} {request.path}")
        return _error(error.code, "UnknownOperationException", None)

    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.doubles.sagemaker", description=__doc__.split("\n")[0]
    )
    common_arguments(parser, FAULTS)
    parser.add_argument("--access-key", default=SageMakerDoubleConfig.access_key)
    parser.add_argument("--secret-key", default=SageMakerDoubleConfig.secret_key)
    parser.add_argument("--session-token", default=None)
    parser.add_argument("--region", default=SageMakerDoubleConfig.region)
    parser.add_argument("--endpoint", action="append", default=[], help="an endpoint it serves (repeatable)")
    parser.add_argument("--dimensions", type=int, default=1024)
    args = parser.parse_args(argv)
    config = SageMakerDoubleConfig(
        access_key=args.access_key,
        secret_key=args.secret_key,
        session_token=args.session_token,
        region=args.region,
        endpoints=frozenset(args.endpoint) or SageMakerDoubleConfig.endpoints,
        dimensions=args.dimensions,
        tokenizer=args.tokenizer,
        latency_ms=args.latency_ms,
        hang_seconds=args.hang_seconds,
        faults=tuple(args.fault),
    )
    serve(create_app(config), args.host, args.port)


if __name__ == "__main__":
    main()
