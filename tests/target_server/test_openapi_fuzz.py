"""schemathesis against the real server: hundreds of generated requests per endpoint, no 5xx.

The server runs as users run it (gunicorn, the bundled model), started once for the module. Every
answer must be a documented status whose body, content type and headers match ``/openapi.json``;
requests that break the schema must be refused with a 4xx.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tests.support.target import running_target_server

pytestmark = pytest.mark.usefixtures("spawn")

POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
# (method, path, generation mode, examples): 300 requests per embedding endpoint, schema-valid
# and schema-breaking; /embeddings is /v1/embeddings' handler again. The GETs take no input.
RUNS = [
    ("POST", "/embed", POSITIVE, 200),
    ("POST", "/embed", NEGATIVE, 100),
    ("POST", "/v1/embeddings", POSITIVE, 200),
    ("POST", "/v1/embeddings", NEGATIVE, 100),
    ("POST", "/embeddings", POSITIVE, 30),
    ("GET", "/health", POSITIVE, 5),
    ("GET", "/info", POSITIVE, 5),
    ("GET", "/metrics", POSITIVE, 5),
    ("GET", "/openapi.json", POSITIVE, 5),
]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    # Few inputs per request keeps each generated request cheap on a CPU.
    with running_target_server("--max-inputs", "4", "--max-batch-tokens", "1024", "--threads", "8") as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(server: str) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    # Too many inputs breaks the schema's maxItems and is refused with 413 (README's error table),
    # a status schemathesis does not expect for bad data by default.
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    return schema


@pytest.mark.parametrize(
    ("method", "path", "mode", "examples"), RUNS, ids=[f"{m} {p} {g.value}" for m, p, g, _ in RUNS]
)
def test_generated_requests_get_documented_answers_and_no_5xx(
    api_schema: schemathesis.BaseSchema,
    server: str,
    method: str,
    path: str,
    mode: GenerationMode,
    examples: int,
) -> None:
    sent = []

    @given(case=api_schema[path][method].as_strategy(mode))
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case) -> None:
        sent.append(case.call_and_validate(base_url=server).status_code)

    check()
    print(f"{method} {path} {mode.value}: {len(sent)} requests, statuses {Counter(sent)}")
    if method == "POST":  # inputs to vary: hypothesis runs every example asked for
        assert len(sent) >= examples
    if mode is POSITIVE:
        assert sent.count(200) > len(sent) // 2, Counter(sent)


def test_server_is_healthy_after_fuzzing(server: str) -> None:
    assert requests.get(f"{server}/health", timeout=10).status_code == 200
