"""A test double of the embedder: the real model, but forward passes over a size run out of memory.

It raises a real ``torch.OutOfMemoryError`` (what CUDA raises), so OOM recovery -- split, retry,
fail only a lone input -- is exercised on a machine without a GPU. Production code has no such hook.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from target_server.embedder import SentenceTransformerEmbedder


class OutOfMemoryAbove:
    """Wraps a real embedder; ``embed`` fails like CUDA over ``padded_token_limit`` padded tokens."""

    def __init__(self, inner: SentenceTransformerEmbedder, padded_token_limit: int) -> None:
        self.inner = inner
        self.padded_token_limit = padded_token_limit

    def embed(self, batch: Sequence[Sequence[int]], task: str | None = None) -> torch.Tensor:
        padded = max(len(ids) for ids in batch) * len(batch)
        if padded > self.padded_token_limit:
            raise torch.OutOfMemoryError(
                f"CUDA out of memory (test double: {padded} padded tokens > {self.padded_token_limit})"
            )
        return self.inner.embed(batch, task)

    def __getattr__(self, name: str):
        """Everything else (tokenize, info, release_memory, is_out_of_memory) is the real embedder's."""
        return getattr(self.inner, name)
