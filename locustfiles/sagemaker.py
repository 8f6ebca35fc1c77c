"""SageMakerUser: jina-embeddings-v3's Marketplace container on a SageMaker real-time endpoint.

    AWS_PROFILE=bench locust -f locustfiles/sagemaker.py --sagemaker-endpoint jina-v3 \\
        --aws-region us-east-1 --grid article     # host defaults to runtime.sagemaker.<region>...

Each request is signed with SigV4 by botocore's own ``SigV4Auth`` (signing service ``sagemaker``;
requests-aws4auth signs ``requests`` objects only, and this user runs on FastHttpUser's
geventhttpclient) with credentials from the standard boto3 chain, refreshed per request. It signs
only for AWS's own runtime or the host given at start: a run the web form points at another host
goes unsigned (``embed_bench.load.credentials``). The body is the container's
``{"data": [{"text": ...}], "parameters": {...}}``; its response reports tokens per item, summed
into the record's ``tokens_server``. Errors carry ``x-amzn-ErrorType`` (``ModelError``,
``ThrottlingException``, ...), which names the failure (``embed_bench.core.checks``). A body over
SageMaker's 6 MB limit is recorded as a failure without being sent.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patches ssl before boto3 loads, or ssl recurses)

# isort: split
import functools
import json
import logging
import re
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from locust.env import Environment
from locust.exception import StopTest

import embed_bench.load.prometheus_exporter  # GET /metrics on the web UI, for Prometheus
import embed_bench.load.web_ui  # noqa: F401  (registers the embed-bench tab of the web UI)
from embed_bench.core.backends import sagemaker_runtime_url
from embed_bench.core.checks import Embeddings, embedding_items
from embed_bench.core.options import BenchOptions
from embed_bench.load import credentials
from embed_bench.load.shape import GridShape
from embed_bench.load.users import EmbeddingUser
from embed_bench.load.workload import PlannedRequest

__all__ = ["GridShape", "SageMakerUser"]

# botocore's signer logs the canonical request, session token included, at DEBUG: never let it,
# whatever --loglevel says (a run's logs must not hold credentials).
logging.getLogger("botocore.auth").setLevel(logging.INFO)

BODY_LIMIT_BYTES = 6_291_456
SIGNING_SERVICE = "sagemaker"  # not "sagemaker-runtime": the runtime API signs as "sagemaker"
DEFAULT_TASK = "text-matching"
_ENDPOINT_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")
_RUNTIME_HOST = re.compile(r"runtime\.sagemaker\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?")


def resolve_region(options: BenchOptions, host: str | None) -> str:
    """--aws-region, else the region in a runtime host name, else the boto3 default region."""
    if options.aws_region:
        return options.aws_region
    match = _RUNTIME_HOST.fullmatch(urlsplit(host or "").hostname or "")
    if match:
        return match.group(1)
    region = boto3.Session().region_name
    if not region:
        raise StopTest("SageMaker: no region; pass --aws-region or set AWS_DEFAULT_REGION / a profile region")
    return region


@functools.lru_cache(maxsize=1)
def _credentials() -> Any:
    """The boto3 chain (env, profile, SSO, role), resolved once per process, refreshed by botocore."""
    credentials = boto3.Session().get_credentials()
    if credentials is None:
        raise StopTest("SageMaker: no AWS credentials found in the boto3 credential chain")
    return credentials


def host_header(url: str) -> str:
    """The Host header to send and sign: the URL's host with its port unless it is the default one
    (what the runtime, and the SageMaker double, check the signature against)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    if parts.port is not None and parts.port == default_port:
        netloc = netloc.rsplit(":", 1)[0]
    return netloc


class SageMakerUser(EmbeddingUser):
    def __init__(self, environment: Environment) -> None:
        options = BenchOptions.from_namespace(environment.parsed_options)
        endpoint = options.sagemaker_endpoint
        if not endpoint or len(endpoint) > 63 or not _ENDPOINT_NAME.fullmatch(endpoint):
            raise StopTest(f"SageMaker: --sagemaker-endpoint {endpoint!r} is not a valid endpoint name")
        self.region = resolve_region(options, self.host or environment.host)
        if not self.host:
            self.host = sagemaker_runtime_url(self.region)
        super().__init__(environment)
        self._path = f"/endpoints/{endpoint}/invocations"
        self._host_header = host_header(self.host)
        self._url = self.host.rstrip("/") + self._path
        self._credentials = _credentials()
        # AWS credentials sign only for AWS's runtime or the host given at start, never a form's host.
        self._sign = credentials.aws_allowed(environment, self._url)

    @classmethod
    def encode_request(cls, passages: list[str], options: BenchOptions) -> bytes:
        parameters = {"task": options.task or DEFAULT_TASK, "dimensions": None, "late_chunking": False}
        return json.dumps(
            {"data": [{"text": passage} for passage in passages], "parameters": parameters}
        ).encode()

    def request_path(self) -> str:
        return self._path

    def request_headers(self, body: bytes) -> dict[str, str]:
        """Signed headers for this body: Host, X-Amz-Date, the session token if any, Authorization."""
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Host": self._host_header,
        }
        if not self._sign:
            return headers
        aws_request = AWSRequest(method="POST", url=self._url, data=body, headers=headers)
        credentials = self._credentials.get_frozen_credentials()  # refreshes a role's credentials
        SigV4Auth(credentials, SIGNING_SERVICE, self.region).add_auth(aws_request)
        return dict(aws_request.headers.items())

    def precheck(self, request: PlannedRequest) -> str | None:
        if len(request.body) > BODY_LIMIT_BYTES:
            return f"payload too large: over {BODY_LIMIT_BYTES} bytes"
        return None

    def parse_embeddings(self, body: Any, inputs: int) -> Embeddings:
        items = embedding_items(body)
        usages = [item.get("usage") for item in items]
        counts = [usage.get("total_tokens") if isinstance(usage, dict) else None for usage in usages]
        tokens = sum(counts) if counts and all(isinstance(count, int) for count in counts) else None
        return Embeddings([item["embedding"] for item in items], tokens)
