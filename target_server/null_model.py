"""``--model null:WIDTH``: the server with its forward pass replaced by an instant output.

What is left is everything around the model -- HTTP, JSON parsing, tokenization, batching, padding,
response encoding -- which is what limits a server once a GPU makes the forward pass fast.
``benchmarks/overhead.py`` measures it against the bare tokenizer. The output is realistic (unit
vectors of random float32 values, so encoding costs what real vectors cost), fixed and meaningless.
"""

from __future__ import annotations

import dataclasses

import torch

from target_server.embedder import SentenceTransformerEmbedder, bundled_model_path

NULL_PREFIX = "null"
DEFAULT_WIDTH = 1024
BANK_ROWS = 4096  # distinct output rows; larger batches reuse them in turn
SEED = 0


def is_null(spec: str) -> bool:
    return spec == NULL_PREFIX or spec.startswith(f"{NULL_PREFIX}:")


def parse_width(spec: str) -> int:
    """``null`` -> 1024, ``null:384`` -> 384; anything else is a ValueError naming the form."""
    name, colon, width = spec.partition(":")
    if name != NULL_PREFIX or (colon and not (width.isdigit() and int(width) >= 1)):
        raise ValueError(f"null model must be 'null' or 'null:WIDTH' with WIDTH >= 1, got {spec!r}")
    return int(width) if colon else DEFAULT_WIDTH


class NullEmbedder(SentenceTransformerEmbedder):
    """The bundled model's tokenizer and pipeline up to the forward pass, which returns fixed vectors."""

    def __init__(self, width: int = DEFAULT_WIDTH) -> None:
        from sentence_transformers import SentenceTransformer

        super().__init__(
            SentenceTransformer(bundled_model_path(), device="cpu"),
            f"{NULL_PREFIX}:{width}",
            synthetic=True,
            note=f"null model: no forward pass; every input gets one of {BANK_ROWS} fixed random unit "
            f"vectors of {width} dims, meaningless, for measuring the server's own overhead",
        )
        self.info = dataclasses.replace(self.info, dimensions=width, parameters=0)
        bank = torch.randn(BANK_ROWS, width, generator=torch.Generator().manual_seed(SEED))
        self._bank = torch.nn.functional.normalize(bank, dim=1)

    @classmethod
    def from_spec(cls, spec: str) -> NullEmbedder:
        return cls(parse_width(spec))

    def _forward(self, features: dict[str, object], task: str | None) -> torch.Tensor:
        rows = len(features["input_ids"])  # type: ignore[arg-type]
        if rows <= BANK_ROWS:
            return self._bank[:rows]  # a view: nothing downstream writes into vectors
        return self._bank[torch.arange(rows) % BANK_ROWS]
