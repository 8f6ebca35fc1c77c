"""Locust side of embed-bench: one locustfile per backend, token-exact payloads, grid shapes.

This package's ``__init__`` stays free of Locust imports on purpose: importing ``locust`` monkey-patches
the whole process with gevent, and the ``embed-bench run`` command only needs to know which
locustfile and user class a backend name stands for before it starts ``locust`` as a subprocess.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LOCUSTFILES_DIR = Path(__file__).resolve().parent
JINA_API_URL = "https://api.jina.ai"


@dataclass(frozen=True)
class Backend:
    """What ``--backend NAME`` runs: ``locust -f <locustfile> <user_class>``."""

    locustfile: Path
    user_class: str
    description: str
    default_host: str | None = None  # None: the user must pass --host (or it is derived, as for SageMaker)


# Registry of backends; the keys are the CLI choices of `embed-bench run --backend`.
BACKENDS: dict[str, Backend] = {
    "self-hosted": Backend(
        LOCUSTFILES_DIR / "self_hosted.py",
        "SelfHostedUser",
        "the bundled target server's POST /embed",
    ),
    "jina": Backend(
        LOCUSTFILES_DIR / "jina_api.py",
        "JinaApiUser",
        "the hosted Jina Embeddings API (Bearer key from --api-key or JINA_API_KEY, --model, --task)",
        default_host=JINA_API_URL,
    ),
    "openai": Backend(
        LOCUSTFILES_DIR / "jina_api.py",
        "JinaApiUser",
        "any OpenAI-compatible embeddings server (TEI, vLLM, Infinity, the bundled server's /v1/embeddings);"
        " set --model and, if not /v1/embeddings, --embeddings-path",
    ),
    "sagemaker": Backend(
        LOCUSTFILES_DIR / "sagemaker.py",
        "SageMakerUser",
        "a SageMaker real-time endpoint running the Jina container (SigV4 from the boto3 credential chain);"
        " set --sagemaker-endpoint and --aws-region",
    ),
}
