"""``--model synthetic:NAME``: a named model's architecture with random weights, for measuring cost.

When a model's weights cannot be downloaded or licensed yet, its serving cost still can be
measured: compute and memory depend on the shape (layers, widths, vocabulary, sequence length),
not on the values. The model is built the way a real one is served -- a transformers model from its
config class inside sentence-transformers' ``Transformer`` wrapper, then ``Pooling`` and
``Normalize`` -- so SDPA attention, dtype casts and out-of-memory handling take the same path.

Token ids come from the bundled all-MiniLM-L6-v2 tokenizer (BERT uncased, 30,522 ids). Every id is
below every shape's vocabulary size (checked at build), so no id is mapped or clipped: the
embedding table keeps the real model's size (its memory), and lookups only touch its first 30,522
rows, which costs the same as any other rows. The padding id is the tokenizer's (0), so XLM-R's
position ids (counted from ``padding_idx + 1``) stay within its 8,194 positions at 8,192 tokens.

Weights are drawn with a fixed seed (per device) on the target device itself, so a 570M-parameter
model needs no host copy on a GPU. The vectors mean nothing; ``/info`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from target_server.embedder import bundled_model_path

SYNTHETIC_PREFIX = "synthetic:"
SEED = 0


@dataclass(frozen=True)
class SyntheticShape:
    """A model's architecture as its transformers config (and sentence-transformers pooling) states it."""

    architecture: str  # "xlm-roberta" or "bert"
    layers: int
    hidden: int
    heads: int
    ffn: int
    positions: int
    vocab: int
    max_input_tokens: int
    pooling: str  # sentence-transformers pooling mode: "mean" or "cls"
    real_model: str  # what is imitated, and how its parameter count compares

    def config(self):
        from transformers import BertConfig, XLMRobertaConfig

        common = dict(
            vocab_size=self.vocab,
            hidden_size=self.hidden,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            intermediate_size=self.ffn,
            max_position_embeddings=self.positions,
            pad_token_id=0,  # the bundled tokenizer's [PAD]
        )
        if self.architecture == "xlm-roberta":
            return XLMRobertaConfig(type_vocab_size=1, **common)
        return BertConfig(type_vocab_size=2, **common)

    def layer_parameters(self) -> int:
        """Parameters of the encoder layers: those every token multiplies (no embeddings, no pooler)."""
        from transformers import AutoModel

        with torch.device("meta"):  # shapes only: no memory, no init
            model = AutoModel.from_config(self.config())
        return sum(p.numel() for p in model.encoder.parameters())

    def forward_flops_per_token(self, sequence_tokens: int) -> float:
        """2 x layer parameters (a multiply-add each) + attention's 4 x layers x sequence x hidden.

        Attention costs one token two products against all ``sequence_tokens`` positions in every
        layer: its query against each key (QK^T, ``t x hidden`` multiply-adds) and the weighted sum of
        the values (``t x hidden`` more), so 2 x 2 x t x hidden FLOPs. The ``2 x layers x t x hidden``
        of Kaplan et al. 2020 ("Scaling laws") is a causal decoder's, whose token attends to half the
        context on average; an encoder attends both ways, every token to all t positions. Counted the
        decoder's way, jina-embeddings-v3's MFU was understated by 29% at t=8192 (4% at t=512).
        Embedding lookups cost no FLOPs.
        """
        return 2 * self.layer_parameters() + 4 * self.layers * sequence_tokens * self.hidden


SHAPES: dict[str, SyntheticShape] = {
    "jina-embeddings-v3": SyntheticShape(
        architecture="xlm-roberta",
        layers=24,
        hidden=1024,
        heads=16,
        ffn=4096,
        positions=8194,
        vocab=250_002,
        max_input_tokens=8192,
        pooling="mean",
        real_model="jinaai/jina-embeddings-v3: XLM-RoBERTa large with 8,194 positions (567.8M parameters, "
        "as built here) plus five task LoRA adapters, about 572M in all on its model card; the "
        "adapters are left out (one runs per pass and adds well under 1% of the FLOPs)",
    ),
    "bge-small": SyntheticShape(
        architecture="bert",
        layers=12,
        hidden=384,
        heads=12,
        ffn=1536,
        positions=512,
        vocab=30_522,
        max_input_tokens=512,
        pooling="cls",
        real_model="BAAI/bge-small-en-v1.5: BERT small, 33.4M parameters, the same as built here",
    ),
}


def _st_modules():
    try:  # sentence-transformers >= 6.2
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Normalize, Pooling, Transformer
    return Transformer, Pooling, Normalize


def build_synthetic(name: str, device: str, model_kwargs: dict[str, Any]) -> tuple[Any, str]:
    """A SentenceTransformer of shape ``SHAPES[name]`` with seeded random weights on ``device``, and a note."""
    if name not in SHAPES:
        raise ValueError(f"unknown synthetic model {name!r}; known: {', '.join(SHAPES)}")
    return build_shape(SHAPES[name], device, model_kwargs)


def build_shape(shape: SyntheticShape, device: str, model_kwargs: dict[str, Any]) -> tuple[Any, str]:
    """A SentenceTransformer of any shape (tests build small ones) with seeded random weights, and a note."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    Transformer, Pooling, Normalize = _st_modules()
    # The wrapper brings the bundled tokenizer; its small BERT is then replaced by the random model.
    transformer = Transformer(bundled_model_path())
    vocab_in_use = len(transformer.tokenizer)
    if vocab_in_use > shape.vocab:
        raise ValueError(
            f"the bundled tokenizer's {vocab_in_use} ids do not fit a vocabulary of {shape.vocab}"
        )
    with torch.random.fork_rng(devices=[torch.device(device)] if device.startswith("cuda") else []):
        torch.manual_seed(SEED)
        with torch.device(device):
            transformer.model = AutoModel.from_config(shape.config(), **model_kwargs)
    transformer.max_seq_length = shape.max_input_tokens
    model = SentenceTransformer(
        modules=[transformer, Pooling(shape.hidden, pooling_mode=shape.pooling), Normalize()], device=device
    )
    note = (
        f"synthetic: random weights (seed {SEED}) in the shape of {shape.real_model}; "
        "its vectors mean nothing -- it measures serving cost only"
    )
    return model, note
